/// Quirk P5: the GemPC Pinpad (and the VEGA-ALPHA, its firmware) shows the
/// prompts the host loads into it at open: ten texts of 16 characters, in
/// the user's language, sent as one Escape. The texts are ours; their order
/// is the firmware's.
public enum DisplayPrompts {
    /// The Escape's header: load strings, at the prompt memory, from its first byte, and the firmware's two magic bytes.
    static let header: [UInt8] = [0xB2, 0xA0, 0x00, 0x4D, 0x4C]
    static let width = 16

    /// In the firmware's order: enter PIN, new PIN, confirm PIN, PIN right, PIN wrong,
    /// time out, tries left ("*" is where the pad puts the count), insert card, card error, PIN blocked.
    static let texts: [String: [String]] = [
        "en": ["Enter PIN", "New PIN", "Confirm PIN", "PIN OK", "Wrong PIN", "Time out", "* tries left",
               "Insert card", "Card error", "PIN blocked"],
        "fr": ["Saisir le PIN", "Nouveau PIN", "Confirmer le PIN", "PIN correct", "PIN faux", "Delai depasse",
               "* essais restant", "Inserer la carte", "Erreur de carte", "PIN bloque"],
        "de": ["PIN eingeben", "Neue PIN", "PIN bestaetigen", "PIN richtig", "PIN falsch", "Zeit abgelaufen",
               "* Versuche offen", "Karte einstecken", "Kartenfehler", "PIN gesperrt"],
    ]

    /// The language of a locale name as LANG gives it ("fr_FR.UTF-8" → "fr"); English for others or none.
    public static func language(fromLocale locale: String?) -> String {
        let code = String((locale ?? "").prefix(2)).lowercased()
        return texts[code] == nil ? "en" : code
    }

    /// The Escape's data: the header, then each prompt padded with spaces to 16 characters (165 bytes).
    public static func command(language: String) -> [UInt8] {
        let prompts = texts[language] ?? texts["en"] ?? []
        return header + prompts.flatMap { text -> [UInt8] in
            let bytes = Array(text.utf8.prefix(width))
            return bytes + [UInt8](repeating: 0x20, count: width - bytes.count)
        }
    }
}
