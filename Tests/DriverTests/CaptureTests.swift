import Testing
@testable import CCID
@testable import SimulatorCore

/// The --pcap trace's encodings: usbmon records byte for byte, and the PIN
/// mask on the messages that carry PINs.
struct CaptureTests {
    @Test func aBulkOutSubmissionIsTheKernelsHeaderThenTheData() {
        let record = UsbmonRecord(id: 0x0102, event: .submit, transfer: .bulk, endpoint: 0x01, device: 5,
                                  data: [0xAA, 0xBB], length: 2, seconds: 0x1234_5678, microseconds: 999_999)
        let bytes = record.encoded()
        #expect(bytes.count == 66)
        #expect(Array(bytes[0..<16]) == [0x02, 0x01, 0, 0, 0, 0, 0, 0, 0x53, 0x03, 0x01, 0x05, 0x01, 0x00, 0x2D, 0x00])
        #expect(Array(bytes[16..<40]) == [0x78, 0x56, 0x34, 0x12, 0, 0, 0, 0, 0x3F, 0x42, 0x0F, 0x00,
                                          0x8D, 0xFF, 0xFF, 0xFF, 0x02, 0, 0, 0, 0x02, 0, 0, 0])
        #expect(Array(bytes[40..<64]) == [UInt8](repeating: 0, count: 24))
        #expect(Array(bytes[64...]) == [0xAA, 0xBB])
    }

    @Test func aControlSubmissionCarriesItsSetupAndAnInCompletionItsData() {
        let setup: [UInt8] = [0x80, 0x06, 0x00, 0x01, 0x00, 0x00, 0x12, 0x00]
        let submit = UsbmonRecord(id: 1, event: .submit, transfer: .control, endpoint: 0x80, device: 2, setup: setup,
                                  length: 18, seconds: 0, microseconds: 0).encoded()
        #expect(submit[14] == 0 && submit[15] == 0x3C)      // setup present, data to come in
        #expect(Array(submit[40..<48]) == setup)
        let complete = UsbmonRecord(id: 1, event: .complete, transfer: .control, endpoint: 0x80, device: 2,
                                    data: [0x12, 0x01], length: 2, seconds: 0, microseconds: 0).encoded()
        #expect(complete[8] == 0x43 && complete[14] == 0x2D && complete[15] == 0)
        #expect(Array(complete[28..<32]) == [0, 0, 0, 0])   // status 0: done
    }

    @Test func thePcapFileHeaderNamesTheUsbmonLinkType() {
        #expect(PcapFormat.fileHeader() == [0xD4, 0xC3, 0xB2, 0xA1, 0x02, 0x00, 0x04, 0x00, 0, 0, 0, 0, 0, 0, 0, 0,
                                            0x00, 0x00, 0x04, 0x00, 0xDC, 0x00, 0x00, 0x00])
    }

    static func xfrBlock(_ data: [UInt8]) -> [UInt8] {
        Command(slot: 0, sequence: 7, body: .xfrBlock(bwi: 0, levelParameter: 0, data: data)).encoded()
    }

    @Test func pinsAreMaskedInApdusAndT1Blocks() {
        let verify: [UInt8] = [0x00, 0x20, 0x00, 0x01, 0x04, 0x31, 0x32, 0x33, 0x34]
        #expect(PINMask.masked(Self.xfrBlock(verify)) == Self.xfrBlock([0x00, 0x20, 0x00, 0x01, 0x04, 0x2A, 0x2A, 0x2A, 0x2A]))
        let change: [UInt8] = [0x00, 0x24, 0x00, 0x01, 0x02, 0x31, 0x32]
        #expect(PINMask.masked(Self.xfrBlock(change)) == Self.xfrBlock([0x00, 0x24, 0x00, 0x01, 0x02, 0x2A, 0x2A]))
        // In a T=1 I-block (NAD, PCB, LEN, the APDU, LRC): the LRC stays as it was.
        let block = [0x00, 0x40, UInt8(verify.count)] + verify + [0x5A]
        #expect(PINMask.masked(Self.xfrBlock(block)) == Self.xfrBlock([0x00, 0x40, 0x09, 0x00, 0x20, 0x00, 0x01, 0x04,
                                                                       0x2A, 0x2A, 0x2A, 0x2A, 0x5A]))
        // Other commands, and other messages, pass as they are.
        let read: [UInt8] = [0x00, 0xB0, 0x00, 0x00, 0x04]
        #expect(PINMask.masked(Self.xfrBlock(read)) == Self.xfrBlock(read))
        #expect(PINMask.masked([0x62, 0, 0, 0, 0, 0, 1, 0, 0, 0]) == [0x62, 0, 0, 0, 0, 0, 1, 0, 0, 0])
        // A VERIFY that lies about Lc is left alone rather than read past its end.
        let short: [UInt8] = [0x00, 0x20, 0x00, 0x01, 0x09, 0x31]
        #expect(PINMask.masked(Self.xfrBlock(short)) == Self.xfrBlock(short))
    }
}
