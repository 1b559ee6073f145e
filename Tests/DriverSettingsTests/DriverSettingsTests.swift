import Testing
@testable import DriverSettings

struct InfoPlistTests {
    static let plist = """
    <?xml version="1.0" encoding="UTF-8"?>
    <!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
    <plist version="1.0">
    <dict>
    \t<key>ifdManufacturerString</key>
    \t<string>A &amp; B &lt;x&gt;</string>
    \t<!-- a comment with <key>fake</key><string>no</string> and > inside -->
    \t<key>ifdLogLevel</key>
    \t<string>0x000F</string>
    \t<key>ifdVendorID</key>
    \t<array>
    \t\t<string>0x076B</string>
    \t\t<string>0x046A</string>
    \t</array>
    \t<key>ifdDriverOptions</key>
    \t<string>usb-workers=yes max-exchange-ms=5000</string>
    \t<key>Nested</key>
    \t<dict><key>inner</key><string>hidden</string></dict>
    \t<key>Empty</key>
    \t<string></string>
    </dict>
    </plist>
    """

    @Test func topLevelStringsOnly() {
        #expect(InfoPlist.strings(Self.plist) == [
            "ifdManufacturerString": "A & B <x>",
            "ifdLogLevel": "0x000F",
            "ifdDriverOptions": "usb-workers=yes max-exchange-ms=5000",
            "Empty": "",
        ])
    }

    @Test func malformedInputGivesWhatCouldBeRead() {
        #expect(InfoPlist.strings("") == [:])
        #expect(InfoPlist.strings("<dict><key>a</key><string>1</string><key>b</key><string>unterminated") == ["a": "1"])
        #expect(InfoPlist.strings("<dict><key>a</key><string>1</string><!-- open comment") == ["a": "1"])
        #expect(InfoPlist.strings("<dict><key>a") == [:])
        #expect(InfoPlist.strings("<<<>>></dict></dict><dict><key>k</key><string>v</string>") == [:])
        #expect(InfoPlist.strings("<dict><key>k</key><string>&bogus;&amp</string>") == ["k": "&bogus;&amp"])
        #expect(InfoPlist.strings(String(repeating: "<dict>", count: 10_000)) == [:])
    }
}

struct DriverSettingsTests {
    static func settings(_ plist: [String: String], _ env: [String: String] = [:]) -> DriverSettings {
        DriverSettings(plist: plist, environment: { env[$0] })
    }

    @Test func defaultsWithNothingSet() {
        let s = Self.settings([:])
        #expect(s.log == [.errors, .info])
        #expect(s.usbWorkers == .auto)
        #expect(s.maxExchangeMs == 30_000)
        #expect(s.problems == [])
        #expect(s.workersOn(switchFileExists: { true }))
        #expect(!s.workersOn(switchFileExists: { false }))
    }

    @Test func infoPlistKeys() {
        let s = Self.settings(["ifdLogLevel": "0x000F", "ifdDriverOptions": "usb-workers=no max-exchange-ms=5000"])
        #expect(s.log == [.errors, .info, .periodic, .communication])
        #expect(s.usbWorkers == .no)
        #expect(!s.workersOn(switchFileExists: { true }))
        #expect(s.maxExchangeMs == 5000)
        #expect(s.problems == [])
        #expect(Self.settings(["ifdLogLevel": "1"]).log == [.errors])
        #expect(Self.settings(["ifdDriverOptions": "usb-workers=YES"]).workersOn(switchFileExists: { false }))
    }

    @Test func environmentOverridesInfoPlist() {
        let s = Self.settings(["ifdLogLevel": "0x0003", "ifdDriverOptions": "usb-workers=no max-exchange-ms=5000"],
                              ["SWIFTCCID_LOG_LEVEL": "0x0009", "SWIFTCCID_USB_WORKERS": "1",
                               "SWIFTCCID_MAX_EXCHANGE_MS": "700"])
        #expect(s.log == [.errors, .communication])
        #expect(s.usbWorkers == .yes)
        #expect(s.maxExchangeMs == 700)
        #expect(Self.settings(["ifdDriverOptions": "usb-workers=yes"], ["SWIFTCCID_USB_WORKERS": "0"]).usbWorkers == .no)
    }

    @Test func capIsBounded() {
        #expect(Self.settings(["ifdDriverOptions": "max-exchange-ms=99999999999"]).maxExchangeMs == 3_600_000)
        #expect(Self.settings([:], ["SWIFTCCID_MAX_EXCHANGE_MS": "18446744073709551615"]).maxExchangeMs == 3_600_000)
    }

    @Test func quirksSwitchedOffFromBothPlaces() {
        #expect(Self.settings([:]).quirksOff.isEmpty)
        #expect(Self.settings(["ifdDriverOptions": "quirks-off=D9+o1 max-exchange-ms=5000 quirks-off=W2"]).quirksOff == ["D9", "o1", "W2"])
        #expect(Self.settings(["ifdDriverOptions": "quirks-off=D9"], ["SWIFTCCID_QUIRKS_OFF": "R3;D4"]).quirksOff == ["D9", "R3", "D4"])
    }

    @Test func escapeOptionFromBothPlaces() {
        #expect(!Self.settings([:]).escapeAllowed)
        #expect(Self.settings(["ifdDriverOptions": "escape=yes"]).escapeAllowed)
        #expect(!Self.settings(["ifdDriverOptions": "escape=yes"], ["SWIFTCCID_ESCAPE": "no"]).escapeAllowed)
        #expect(Self.settings(["ifdDriverOptions": "escape=perhaps"]).problems == ["ifdDriverOptions: escape must be yes or no, not 'perhaps'"])
    }

    @Test func badValuesAreReportedAndLeaveDefaults() {
        let s = Self.settings(["ifdLogLevel": "loud", "ifdDriverOptions": "usb-workers=maybe max-exchange-ms=0 colour=blue junk"],
                              ["SWIFTCCID_MAX_EXCHANGE_MS": "-5", "SWIFTCCID_LOG_LEVEL": "0x1FFFFFFFF"])
        #expect(s.log == .default)
        #expect(s.usbWorkers == .auto)
        #expect(s.maxExchangeMs == 30_000)
        #expect(s.problems == [
            "ifdLogLevel: 'loud' is not a number (hex 0x... or decimal)",
            "ifdDriverOptions: usb-workers must be auto, yes or no, not 'maybe'",
            "ifdDriverOptions max-exchange-ms: '0' is not a positive number of milliseconds",
            "ifdDriverOptions: unknown setting 'colour'",
            "ifdDriverOptions: 'junk' is not name=value",
            "SWIFTCCID_LOG_LEVEL: '0x1FFFFFFFF' is not a number (hex 0x... or decimal)",
            "SWIFTCCID_MAX_EXCHANGE_MS: '-5' is not a positive number of milliseconds",
        ])
    }
}
