/// The devices the driver treats apart, and why. Ids are those of the facts
/// we collected about real readers (T: timing, D: descriptors that lie,
/// R: protocol, W: power-up, O: other); a row's reason is what the device
/// gets wrong. Firmware-bound rows name the bcdDevice releases affected.
public enum QuirkTable {
    public static let entries: [Quirk] = cards + timing + descriptors + transmission + powerUp + pinPads + other + firmwareGate

    /// Cards, in any reader.
    static let cards: [Quirk] = [
        Quirk("T5", "openpgp-card-bwt", atr: [0x3B, 0xFA, 0x13, 0x00, 0xFF, 0x81, 0x31, 0x80, 0x45, 0x00, 0x31, 0xC1, 0x73, 0xC0,
                                              0x01, 0x00, 0x00, 0x90, 0x00, 0xB1],
              .t1WaitingIntegers(0x75),
              "OpenPGP card: its TB3 gives BWI 4 (about 1.4 s) but key generation takes longer; BWI 7, CWI 5 (about 11 s)"),
    ]

    static let timing: [Quirk] = [
        Quirk("T1", "cl1356-boot-delay", [DeviceMatch(0x0B81, 0x0200)], .openDelay(.seconds(1)),
              "id3 CL1356D/T/T5: takes no CCID command until about 1 s after it is opened"),
        Quirk("T2", "slow-slotstatus-1s", [DeviceMatch(0x09D8, 0x0427), DeviceMatch(0x09D8, 0x0428), DeviceMatch(0x072F, 0x2200)],
              .slowSlotStatus(factor: 10),
              "Elatec TWN4, ACS ACR122U: GetSlotStatus takes up to 1 s with no tag in the field"),
        Quirk("T3", "slow-slotstatus-400ms", [DeviceMatch(0x04E6, 0x5293), DeviceMatch(0x04E6, 0x5790),
                                              DeviceMatch(0x04E6, 0x5791), DeviceMatch(0x04E6, 0x5724)],
              .slowSlotStatus(factor: 4),
              "SCM SCL011, Identiv uTrust 3700 F / 3701 F / 4701 F: GetSlotStatus is answered after about 350 ms"),
        Quirk("T4", "fusion-keygen-no-timeext", [DeviceMatch(0x08E6, 0x34D2)], .longerT1WaitingTime(.seconds(300)),
              "Thales eToken Fusion: on-board RSA key generation takes up to 5 minutes, with no time extension"),
    ]

    /// Readers whose descriptor promises what the firmware does not do.
    static let descriptors: [Quirk] = [
        Quirk("D4", "oz776-9600-only", [DeviceMatch(0x0B97, 0x7762), DeviceMatch(0x0B97, 0x7772)], .maxDataRate(9600),
              "O2 Micro Oz776: lists no rates (so any up to 307200 bps) but only 9600 bps works"),
        Quirk("D5", "au95x0-fake-high-rates", [DeviceMatch(0x058F, 0x9540)], .maxDataRate(200_000),
              "Alcor AU9540/AU9560: GET_DATA_RATES lists rates above 200 kbps that fail"),
        Quirk("D7", "scm-maxmsg-263", messageLength: 263, .maxMessageLength(271),
              "readers declaring 263-byte messages (SCM's) take the 270 bytes of a full short APDU"),
        Quirk("D9", "tribank-no-extended", [DeviceMatch(0x0D46, 0x3010)], .exchangeLevel(.shortAPDU),
              "KOBIL TriB@nk: claims extended APDUs; responses over about 296 bytes come back as garbage"),
        Quirk("D10a", "hid-fake-pinpad", hidFamily, .noPINPad,
              "HID AVIATOR, OMNIKEY 3x21 / 6121, Cherry ST-1144, Fujitsu D323: claim PIN verify and modify, have no keypad"),
        Quirk("D10b", "hid-chaining", hidFamily, .exchangeLevel(.extendedAPDU),
              "HID AVIATOR, OMNIKEY 3x21 / 6121, Cherry ST-1144, Fujitsu D323: claim short APDUs but chain long responses"),
        Quirk("D11", "pn7362au-chaining", [DeviceMatch(0x2F7C, 0x6007)], .exchangeLevel(.extendedAPDU),
              "Diebold Nixdorf PN7362au: claims short APDUs; more than 256 bytes only with chaining"),
        Quirk("D12", "kc1000sc-fw100-chaining", [DeviceMatch(0x046A, 0x00A1, firmware: 0x0100...0x0100)],
              .exchangeLevel(.extendedAPDU),
              "Cherry KC 1000 SC firmware 1.00: claims short APDUs; T=1 case 2 responses are cut at 128 bytes and the rest chained"),
        Quirk("D13", "fake-pinpad", [DeviceMatch(0x0783, 0x0006), DeviceMatch(0x25DD, 0x3111)], .noPINPad,
              "C3PO LTC31 v2, bit4id miniLector-EVO: advertise PIN entry, have no keypad"),
        Quirk("P15", "insecure-keyboard-pinentry", [DeviceMatch(0x03F0, 0x1024), DeviceMatch(0x03F0, 0x0036),
                                                    DeviceMatch(0x0BF8, 0x1017), DeviceMatch(0x04F2, 0x1469)], .noPINPad,
              "HP and Fujitsu keyboards, Chicony HP Skylab: their \"secure\" PIN entry also sends the digits to the host as keystrokes"),
    ]

    static let hidFamily = [DeviceMatch(0x076B, 0x3A21), DeviceMatch(0x076B, 0x3031), DeviceMatch(0x076B, 0x6632),
                            DeviceMatch(0x046A, 0x00A7), DeviceMatch(0x0BF8, 0x1024)]

    static let transmission: [Quirk] = [
        Quirk("R2", "etoken5100-no-ifsd", [DeviceMatch(0x0529, 0x0620, firmware: 0x0012...0x0013)], .automaticIFSD,
              "SafeNet eToken 5100 firmware 0.12 and 0.13: after an IFSD negotiation later exchanges stall"),
        Quirk("R4", "au95x0-setparams-fallback", [DeviceMatch(0x058F, 0x9540)], .resetInsteadOfParameters,
              "Alcor AU9540/AU9560: a T=1 SetParameters at a lower speed than the card's fails with the card mute"),
        Quirk("R3", "oz776-no-pps", [DeviceMatch(0x0B97, 0x7762), DeviceMatch(0x0B97, 0x7772)], .noPPS,
              "O2 Micro Oz776: cannot switch the card's protocol with PPS"),
    ]

    static let powerUp: [Quirk] = [
        Quirk("W1", "emv-mode-poweron", [DeviceMatch(0x08E6, 0x4433), DeviceMatch(0x046A, 0x0005)], .isoModeEscape(onError: 0xBB),
              "Gemplus 433-Swap, Cherry XX33: start in EMV mode, where powering up a non-EMV card fails with bError 0xBB"),
        Quirk("W2", "idtoken-poweroff-first", [DeviceMatch(0x0D46, 0x301D)], .powerOffBeforePowerOn,
              "KOBIL IDToken: the card misbehaves unless powered off before each power-up"),
    ]

    /// PIN pads: the Secure structure as each firmware takes it, and what it does not say about itself.
    static let pinPads: [Quirk] = [
        Quirk("P1", "gempc-pinpad-verify-fields", gemPCPinpads, .pinFrame(.verify(validation: 0x02, numberMessage: 0x01)),
              "GemPC Pinpad, VEGA-ALPHA: a verification is accepted only with bNumberMessage 1 and bEntryValidationCondition 2"),
        Quirk("P2", "gempc-pinpad-modify-validation", gemPCPinpads, .pinFrame(.modifyValidation(0x02)),
              "GemPC Pinpad, VEGA-ALPHA: a modification is accepted only with bEntryValidationCondition 2"),
        Quirk("P3", "gemalto-modify-msgindex", [DeviceMatch(vendor: 0x08E6), DeviceMatch(0x0982, 0x0008)], .pinFrame(.modifyAllIndexes),
              "Gemalto readers, VEGA-ALPHA: a modification needs all three bMsgIndex bytes whatever bNumberMessage says"),
        Quirk("P8", "xx44-modify-msgcount", [DeviceMatch(0x046A, 0x0010)], .pinFrame(.modifyNumberMessage(from: 0...2, to: 3)),
              "Cherry SmartBoard XX44: a modification with fewer than 3 messages makes the card answer 6B 80"),
        Quirk("P9", "spr532-st2000-modify", [DeviceMatch(0x04E6, 0xE003), DeviceMatch(0x046A, 0x003E)], .pinFrame(.modifyNoMessages),
              "SCM SPR 532, Cherry ST-2xxx: no display, yet a modification needs all three bMsgIndex bytes and bNumberMessage 0"),
        Quirk("P5", "gempc-pinpad-prompts", gemPCPinpads, .displayPrompts,
              "GemPC Pinpad, VEGA-ALPHA: the display shows only the prompts the host loads at open"),
        Quirk("P4", "gemalto-firmware-features", [DeviceMatch(vendor: 0x08E6)], .firmwareFeaturesEscape([0x6A]),
              "Gemalto readers: the validation keys, PIN sizes and the modification fix are told by Escape 6A, not the descriptor"),
        Quirk("P14", "spr532-case1-unpadded", [DeviceMatch(0x04E6, 0xE003)], .escapeBeforeUnpaddedPIN([0x80, 0x02, 0x00]),
              "SCM SPR 532: a case-1 verification (the PIN appended, unpadded) needs Escape 80 02 00 first"),
        Quirk("P10", "kc1000sc-modify-msg0", [DeviceMatch(0x046A, 0x00A1)], .pinFrame(.modifyNumberMessage(from: 0...0, to: 0xFF)),
              "Cherry KC 1000 SC: rejects a modification with bNumberMessage 0; 0xFF works"),
        Quirk("P11", "dell-verify-msg0", dellKeyboards, .pinFrame(.verify(validation: nil, numberMessage: 0x00)),
              "Dell keyboards SK-3106 and 0x2101: a verification is accepted only with bNumberMessage 0"),
        Quirk("P12", "dell-key-release-delay", dellKeyboards, .delayBeforeVerify(.milliseconds(250)),
              "Dell keyboards SK-3106 and 0x2101: a verification is rejected while the Enter key of the last command is still down"),
        Quirk("P13", "dellsk-extradigit-swap", [DeviceMatch(0x413C, 0x2100)], .pinFrame(.verifySwapMaxExtraDigit),
              "Dell SK-3106: reads the two bytes of wPINMaxExtraDigit the wrong way round"),
        Quirk("P16", "pin-properties", [DeviceMatch(0x08E6, 0x3478, firmware: 0x0100...0x0100), DeviceMatch(0x0982, 0x0008)],
              .pinProperties(PINProperties(minimumSize: 4, maximumSize: 8, validationCondition: 0x02)),
              "GemPC Pinpad 1.00, VEGA-ALPHA: PINs of 4 to 8 digits, validated with the key"),
        Quirk("P16", "pin-properties", [DeviceMatch(0x046A, 0x003E)],
              .pinProperties(PINProperties(minimumSize: 0, maximumSize: 25, validationCondition: 0x02)),
              "Cherry ST-2xxx: PINs of up to 25 digits, validated with the key"),
        Quirk("P16", "pin-properties", [DeviceMatch(0x046A, 0x00A1)], .pinProperties(PINProperties(minimumSize: 0, maximumSize: 32)),
              "Cherry KC 1000 SC: PINs of up to 32 digits"),
        Quirk("P16", "pin-properties", [DeviceMatch(0x076B, 0x3821)], .pinProperties(PINProperties(minimumSize: 1, maximumSize: 31)),
              "HID OMNIKEY 3821: PINs of 1 to 31 digits"),
    ]

    static let gemPCPinpads = [DeviceMatch(0x08E6, 0x3478), DeviceMatch(0x0982, 0x0008)]
    static let dellKeyboards = [DeviceMatch(0x413C, 0x2101), DeviceMatch(0x413C, 0x2100)]

    static let other: [Quirk] = [
        Quirk("O3", "5427ck-escape", [DeviceMatch(0x076B, 0x5427)], .escapeAllowed(prefixes: []),
              "HID OMNIKEY 5427 CK: APDUs to a card are possible only through CCID Escape commands"),
        Quirk("O4", "gemalto-firmware-escape", [DeviceMatch(vendor: 0x08E6)], .escapeAllowed(prefixes: [[0x02]]),
              "Gemalto readers: vendor tools read the firmware version with Escape 02"),
        Quirk("O4", "prox-du-interface-escape", [DeviceMatch(0x08E6, 0x5503)],
              .escapeAllowed(prefixes: [[0x52, 0xF8, 0x04, 0x01, 0x00]]),
              "Gemalto Prox-DU: vendor tools switch between its contactless and contact interfaces with Escape 52 F8 04 01 00"),
        Quirk("M5", "gemcore-secondary-rates",
              [DeviceMatch(0x08E6, 0x3479), DeviceMatch(0x08E6, 0x3480, firmware: 0x0000...0x01FF)],
              .secondarySlotRates([10_753, 21_505, 43_011, 125_000]),
              "GemCore POS Pro, GemCore SIM Pro before 2.00: the slots after the first run only 10753, 21505, 43011 and 125000 bps"),
        Quirk("M6", "gemcore-simpro-presence", [DeviceMatch(0x08E6, 0x3480, firmware: 0x0000...0x01FF)], .presenceUnknown,
              "GemCore SIM Pro before firmware 2.00: cannot sense a card; its status always says one is in"),
        Quirk("O7", "autosuspend-exceptions", [DeviceMatch(0x0783, 0x0003), DeviceMatch(0x058F, 0x9520)], .noAutosuspend,
              "C3PO LTC31 v1, Alcor AU9520: mute or I/O errors after a USB autosuspend and resume"),
        Quirk("O2", "idtoken-info-apdus", [DeviceMatch(0x0D46, 0x301D)],
              .readerInformation(ReaderInformation(manufacturer: "KOBIL systems", product: "IDToken", firmwareDate: "2012.2.7")),
              "KOBIL IDToken: its middleware expects the driver to answer the reader-information APDUs FF 9A 01 xx 00"),
    ]

    /// O1: firmware too old to use; a device below the first good release is
    /// refused at open (switch O1 off to use it anyway).
    static let firmwareGate: [Quirk] = [
        gate(0x04E6, 0xE001, 0x0516, "SCM SCR 331"),
        gate(0x04E6, 0x5111, 0x0620, "SCM SCR 331-DI"),
        gate(0x04E6, 0xE003, 0x0510, "SCM SPR 532"),
        gate(0x0D46, 0x3001, 0x0037, "Kobil KAAN Base"),
        gate(0x0D46, 0x3002, 0x0037, "Kobil KAAN Advanced"),
        gate(0x09C3, 0x0008, 0x0203, "ActivCard USB Reader V2: fails on frames exactly wMaxPacketSize long"),
        gate(0x0DC3, 0x1004, 0x0502, "Athena ASE IIIe USB v2"),
        gate(0x0DC3, 0x1102, 0x0607, "Athena ASE IIIe KB USB"),
        gate(0x058F, 0x9520, 0x0102, "Alcor AU9520-G: does not pass the card's time requests to the host"),
        gate(0x072F, 0x2200, 0x0206, "ACS ACR122U-WB-R: Le=0x7B to ISO 14443 cards returns 63 00"),
        gate(0x08C3, 0x0402, 0x5000, "Precise 200 MC: does not forward time extensions"),
        gate(0x08C3, 0x0401, 0x5000, "Precise 250 MC: does not forward time extensions"),
        gate(0x0B0C, 0x0050, 0x0101, "Todos Argos Mini II: no automatic-IFSD bit, T=1 breaks"),
        gate(0x0DC3, 0x0900, 0x0200, "Athena IDProtect Key: version 1 hardware is broken"),
        gate(0x03F0, 0x0036, 0x0124, "HP USB CCID Smartcard Keyboard: fault in firmware 1.22"),
        gate(0x062D, 0x0001, 0x0102, "THRC Smart Card Reader"),
        gate(0x04E6, 0x5291, 0x0112, "SCM SCL010: first firmware usable contactless"),
    ]

    private static func gate(_ vid: UInt16, _ pid: UInt16, _ firstGood: UInt16, _ what: String) -> Quirk {
        Quirk("O1", "bogus-firmware-gate", [DeviceMatch(vid, pid, firmware: 0...(firstGood - 1))],
              .firmwareRefused(firstGood: firstGood), "\(what); firmware before \(DeviceMatch.release(firstGood)) is too old to use")
    }
}
