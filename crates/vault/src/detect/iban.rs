//! IBANs (ISO 13616), in either case, unbroken or in groups of four: a known country code, that
//! country's length and the mod-97 check. A grouped candidate may run on into the next words
//! (`DE89 3704 0044 0532 0130 00 0815`), so it is cut where the country's length is reached.

/// A candidate: country code and check digits, then either an unbroken run or groups of four
/// (the last one shorter) separated by one space.
pub(super) const CANDIDATE: &str = concat!(
    r"(?i)(?-u:\b)[a-z]{2}[0-9]{2}",
    r"(?:[a-z0-9]{11,30}(?-u:\b)|(?:[ -][a-z0-9]{4}){2,}(?:[ -][a-z0-9]{1,3})?(?-u:\b))",
);

/// What every candidate starts with, for the one-pass prefilter.
pub(super) const TRIGGER: &str = r"(?i-u)[a-z]{2}[0-9]{2}[ -]?[a-z0-9]{4}";

/// IBAN lengths by country (SWIFT IBAN registry).
const LENGTHS: &[(&str, usize)] = &[
    ("AD", 24),
    ("AE", 23),
    ("AL", 28),
    ("AT", 20),
    ("AZ", 28),
    ("BA", 20),
    ("BE", 16),
    ("BG", 22),
    ("BH", 22),
    ("BI", 27),
    ("BR", 29),
    ("BY", 28),
    ("CH", 21),
    ("CR", 22),
    ("CY", 28),
    ("CZ", 24),
    ("DE", 22),
    ("DJ", 27),
    ("DK", 18),
    ("DO", 28),
    ("EE", 20),
    ("EG", 29),
    ("ES", 24),
    ("FI", 18),
    ("FK", 18),
    ("FO", 18),
    ("FR", 27),
    ("GB", 22),
    ("GE", 22),
    ("GI", 23),
    ("GL", 18),
    ("GR", 27),
    ("GT", 28),
    ("HR", 21),
    ("HU", 28),
    ("IE", 22),
    ("IL", 23),
    ("IQ", 23),
    ("IS", 26),
    ("IT", 27),
    ("JO", 30),
    ("KW", 30),
    ("KZ", 20),
    ("LB", 28),
    ("LC", 32),
    ("LI", 21),
    ("LT", 20),
    ("LU", 20),
    ("LV", 21),
    ("LY", 25),
    ("MC", 27),
    ("MD", 24),
    ("ME", 22),
    ("MK", 19),
    ("MN", 20),
    ("MR", 27),
    ("MT", 31),
    ("MU", 30),
    ("NI", 28),
    ("NL", 18),
    ("NO", 15),
    ("OM", 23),
    ("PK", 24),
    ("PL", 28),
    ("PS", 29),
    ("PT", 25),
    ("QA", 29),
    ("RO", 24),
    ("RS", 22),
    ("RU", 33),
    ("SA", 24),
    ("SC", 31),
    ("SD", 18),
    ("SE", 24),
    ("SI", 19),
    ("SK", 24),
    ("SM", 27),
    ("SO", 23),
    ("ST", 25),
    ("SV", 28),
    ("TL", 23),
    ("TN", 24),
    ("TR", 26),
    ("UA", 29),
    ("VA", 22),
    ("VG", 24),
    ("XK", 20),
    ("YE", 30),
];

fn country_length(cc: &[u8]) -> Option<usize> {
    LENGTHS
        .iter()
        .find(|(c, _)| c.as_bytes().eq_ignore_ascii_case(cc))
        .map(|&(_, n)| n)
}

/// ISO 13616 mod 97 over upper-cased characters (spaces ignored): move the first four to the
/// end, letters to numbers, the remainder must be 1.
pub(super) fn mod97_ok(chars: &[u8]) -> bool {
    if chars.len() < 5 {
        return false;
    }
    let mut r = 0u32;
    for &b in chars[4..].iter().chain(&chars[..4]) {
        let v = match b.to_ascii_uppercase() {
            b @ b'0'..=b'9' => u32::from(b - b'0'),
            b @ b'A'..=b'Z' => u32::from(b - b'A') + 10,
            _ => return false,
        };
        r = if v >= 10 {
            (r * 100 + v) % 97
        } else {
            (r * 10 + v) % 97
        };
    }
    r == 1
}

/// The length in bytes of the IBAN that `candidate` starts with, if it holds one.
pub(super) fn iban_len(candidate: &str) -> Option<usize> {
    let b = candidate.as_bytes();
    let want = country_length(b.get(..2)?)?;
    let mut chars: Vec<u8> = Vec::with_capacity(want);
    for (i, &c) in b.iter().enumerate() {
        if c == b' ' || c == b'-' {
            continue;
        }
        chars.push(c);
        if chars.len() == want {
            // Whole groups only: the cut must fall at the end of one.
            let at_end = b.get(i + 1).is_none_or(|&n| n == b' ' || n == b'-');
            return (at_end && mod97_ok(&chars)).then_some(i + 1);
        }
    }
    None
}
