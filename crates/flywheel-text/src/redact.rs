//! PII redaction: personal data in a text is replaced by typed placeholders before the text is
//! stored (logged predictions, feedback) or trained on.
//!
//! | kind | placeholder | recognised |
//! |---|---|---|
//! | URL with credentials | `[URL_CREDENTIALS]` | `scheme://user:password@host...` |
//! | e-mail address | `[EMAIL]` | `local@domain.tld` |
//! | Chinese resident ID | `[CN_ID]` | 18 characters, valid birth date and ISO 7064 check character |
//! | payment card | `[CARD]` | 13–19 digits, plain or in groups of at least four separated by spaces or dashes, Luhn-valid |
//! | IP address | `[IP]` | IPv4 dotted quads, IPv6 (full or compressed) |
//! | phone number | `[PHONE]` | `+` international numbers, North-American `(555) 123-4567` forms, Chinese mobiles `1[3-9]xxxxxxxxx` and landlines `0xx-xxxxxxxx` |
//!
//! Numbers are matched only when no other digit touches them (Chinese text has no spaces, so
//! word boundaries cannot be used). Detectors run in the order of the table; a later match that
//! overlaps an earlier one is ignored.

use std::net::Ipv6Addr;
use std::sync::OnceLock;

use regex::Regex;

/// A kind of personal data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PiiKind {
    /// A URL that carries a user name and password.
    UrlCredentials,
    /// An e-mail address.
    Email,
    /// A mainland-China resident identity card number.
    CnId,
    /// A payment card number.
    Card,
    /// An IPv4 or IPv6 address.
    Ip,
    /// A phone number.
    Phone,
}

impl PiiKind {
    /// The placeholder that replaces it.
    pub fn placeholder(self) -> &'static str {
        match self {
            PiiKind::UrlCredentials => "[URL_CREDENTIALS]",
            PiiKind::Email => "[EMAIL]",
            PiiKind::CnId => "[CN_ID]",
            PiiKind::Card => "[CARD]",
            PiiKind::Ip => "[IP]",
            PiiKind::Phone => "[PHONE]",
        }
    }
}

/// One redacted span of the original text (byte offsets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Redaction {
    /// What was found.
    pub kind: PiiKind,
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

struct Detectors {
    url: Regex,
    email: Regex,
    cn_id: Regex,
    card: Regex,
    ipv4: Regex,
    ipv6: Regex,
    phones: Vec<Regex>,
}

fn detectors() -> &'static Detectors {
    static D: OnceLock<Detectors> = OnceLock::new();
    D.get_or_init(|| {
        // The patterns are constants; a typo is caught by the tests on first use.
        let re = |p: &str| Regex::new(p).unwrap_or_else(|e| panic!("bad built-in pattern {p}: {e}"));
        Detectors {
            url: re(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s/:@]+:[^\s/@]+@[^\s]+"),
            email: re(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}"),
            cn_id: re(r"[0-9]{17}[0-9Xx]"),
            card: re(r"[0-9](?:[ \-]?[0-9]){12,18}"),
            ipv4: re(r"(?:[0-9]{1,3}\.){3}[0-9]{1,3}"),
            ipv6: re(r"[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}"),
            phones: vec![
                re(r"\+[0-9]{1,3}[ .\-]?(?:\([0-9]{1,4}\)[ .\-]?)?[0-9]{1,4}(?:[ .\-]?[0-9]{2,4}){1,4}"),
                re(r"\([0-9]{3}\)[ .\-]?[0-9]{3}[ .\-][0-9]{4}"),
                re(r"[0-9]{3}[.\-][0-9]{3}[.\-][0-9]{4}"),
                re(r"1[3-9][0-9]{9}"),
                re(r"0[0-9]{2,3}-[0-9]{7,8}"),
            ],
        }
    })
}

/// True when the byte range is not glued to another digit (or, for `dots`, a `.digit`).
fn isolated(text: &str, start: usize, end: usize) -> bool {
    let before = text[..start].chars().next_back();
    let after = text[end..].chars().next();
    !before.is_some_and(|c| c.is_ascii_digit()) && !after.is_some_and(|c| c.is_ascii_digit())
}

fn luhn(digits: &[u32]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// ISO 7064 MOD 11-2 check character and a real birth date (YYYYMMDD at positions 6..14).
fn valid_cn_id(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 18 {
        return false;
    }
    const W: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    const CHECK: &[u8; 11] = b"10X98765432";
    let sum: u32 = b[..17]
        .iter()
        .zip(W)
        .map(|(&c, w)| u32::from(c - b'0') * w)
        .sum();
    if CHECK[(sum % 11) as usize] != b[17].to_ascii_uppercase() {
        return false;
    }
    let num = |r: std::ops::Range<usize>| s[r].parse::<u32>().unwrap_or(0);
    let (y, m, d) = (num(6..10), num(10..12), num(12..14));
    (1900..=2100).contains(&y) && (1..=12).contains(&m) && (1..=31).contains(&d)
}

/// Finds the personal data in `text`, in text order.
pub fn find_pii(text: &str) -> Vec<Redaction> {
    let d = detectors();
    let mut found: Vec<Redaction> = Vec::new();
    let add = |kind: PiiKind, start: usize, end: usize, found: &mut Vec<Redaction>| {
        if !found.iter().any(|r| start < r.end && r.start < end) {
            found.push(Redaction { kind, start, end });
        }
    };
    for m in d.url.find_iter(text) {
        add(PiiKind::UrlCredentials, m.start(), m.end(), &mut found);
    }
    for m in d.email.find_iter(text) {
        add(PiiKind::Email, m.start(), m.end(), &mut found);
    }
    for m in d.cn_id.find_iter(text) {
        if isolated(text, m.start(), m.end()) && valid_cn_id(m.as_str()) {
            add(PiiKind::CnId, m.start(), m.end(), &mut found);
        }
    }
    for m in d.card.find_iter(text) {
        let digits: Vec<u32> = m.as_str().chars().filter_map(|c| c.to_digit(10)).collect();
        // Cards are printed in groups of at least four digits; `+86 138 ...` is a phone.
        let grouped = m.as_str().split([' ', '-']).all(|g| g.len() >= 4);
        let plus = text[..m.start()].ends_with('+');
        if isolated(text, m.start(), m.end())
            && grouped
            && !plus
            && (13..=19).contains(&digits.len())
            && luhn(&digits)
        {
            add(PiiKind::Card, m.start(), m.end(), &mut found);
        }
    }
    for m in d.ipv4.find_iter(text) {
        let ok = m.as_str().split('.').all(|o| o.parse::<u8>().is_ok());
        let after = &text[m.end()..];
        let dotted_on =
            after.starts_with('.') && after[1..].starts_with(|c: char| c.is_ascii_digit());
        if ok && isolated(text, m.start(), m.end()) && !dotted_on {
            add(PiiKind::Ip, m.start(), m.end(), &mut found);
        }
    }
    for m in d.ipv6.find_iter(text) {
        let groups = m.as_str().split(':').filter(|g| !g.is_empty()).count();
        if groups >= 3 && m.as_str().parse::<Ipv6Addr>().is_ok() {
            add(PiiKind::Ip, m.start(), m.end(), &mut found);
        }
    }
    for re in &d.phones {
        for m in re.find_iter(text) {
            let digits = m.as_str().chars().filter(char::is_ascii_digit).count();
            if (7..=15).contains(&digits) && isolated(text, m.start(), m.end()) {
                add(PiiKind::Phone, m.start(), m.end(), &mut found);
            }
        }
    }
    found.sort_by_key(|r| r.start);
    found
}

/// `text` with every piece of personal data replaced by its placeholder, and what was replaced
/// (spans in `text`).
///
/// Redaction is repeated until nothing is left to find: replacing a match can uncover a
/// neighbour that did not stand alone before (`555+013 4111 1111` after `+1 415 555` became
/// `[PHONE]`). Those later finds are in the returned text only, not in the spans. Every pass
/// removes digits or an `@`, which placeholders never contain, so this ends.
pub fn redact(text: &str) -> (String, Vec<Redaction>) {
    let found = find_pii(text);
    let mut out = replace(text, &found);
    for _ in 0..16 {
        let more = find_pii(&out);
        if more.is_empty() {
            break;
        }
        out = replace(&out, &more);
    }
    (out, found)
}

fn replace(text: &str, found: &[Redaction]) -> String {
    if found.is_empty() {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for r in found {
        out.push_str(&text[at..r.start]);
        out.push_str(r.kind.placeholder());
        at = r.end;
    }
    out.push_str(&text[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(text: &str) -> String {
        redact(text).0
    }

    #[test]
    fn redaction_leaves_nothing_to_redact() {
        // Found by the tokenize fuzz target: the second number only stands alone once the
        // first one is a placeholder.
        let text = "call +1 415 555+013 4111 1111\u{fffd} 1111 1105";
        let one_pass = replace(text, &find_pii(text));
        assert!(
            !find_pii(&one_pass).is_empty(),
            "one pass is enough here: {one_pass}"
        );
        let out = r(text);
        assert!(find_pii(&out).is_empty(), "{out}");
        assert!(!out.contains("4111"), "{out}");
    }

    #[test]
    fn emails_in_english_and_chinese() {
        assert_eq!(r("mail jane.doe+x@example.co.uk now"), "mail [EMAIL] now");
        assert_eq!(r("请联系张三zhang.san@qq.com谢谢"), "请联系张三[EMAIL]谢谢");
        assert_eq!(r("not an email: a@b"), "not an email: a@b");
    }

    #[test]
    fn phones_in_english_and_chinese() {
        assert_eq!(r("call +1 415-555-0132 today"), "call [PHONE] today");
        assert_eq!(r("call (415) 555-0132."), "call [PHONE].");
        assert_eq!(r("office 415.555.0132"), "office [PHONE]");
        assert_eq!(
            r("我的手机是13812345678，晚上打"),
            "我的手机是[PHONE]，晚上打"
        );
        assert_eq!(r("座机010-62345678"), "座机[PHONE]");
        assert_eq!(r("+86 138 1234 5678"), "[PHONE]");
        // Dates, years, prices and short numbers stay.
        for keep in [
            "on 2024-01-15",
            "in 1999",
            "costs 12.50",
            "room 101",
            "订单2023年5月",
        ] {
            assert_eq!(r(keep), keep);
        }
    }

    #[test]
    fn payment_cards_need_a_valid_luhn_digit() {
        assert_eq!(r("card 4111 1111 1111 1111 ok"), "card [CARD] ok");
        assert_eq!(r("卡号5500-0000-0000-0004已冻结"), "卡号[CARD]已冻结");
        assert_eq!(
            r("card 4111 1111 1111 1112 ok"),
            "card 4111 1111 1111 1112 ok"
        );
    }

    #[test]
    fn ip_addresses() {
        assert_eq!(r("from 192.168.0.17, port 80"), "from [IP], port 80");
        assert_eq!(r("服务器IP是10.0.0.1。"), "服务器IP是[IP]。");
        assert_eq!(r("v6 2001:db8::8a2e:370:7334 up"), "v6 [IP] up");
        assert_eq!(
            r("version 1.2.3.4.5 and 999.1.1.1"),
            "version 1.2.3.4.5 and 999.1.1.1"
        );
        assert_eq!(r("at 12:30"), "at 12:30");
    }

    #[test]
    fn chinese_resident_ids_need_a_valid_check_character() {
        // 11010519491231002X is the standard's example number.
        assert_eq!(
            r("身份证号11010519491231002X，请核对"),
            "身份证号[CN_ID]，请核对"
        );
        assert_eq!(r("ID 11010519491231002x."), "ID [CN_ID].");
        // Wrong check character: not an ID (and too long for a phone).
        assert_eq!(r("号码110105194912310021"), "号码110105194912310021");
    }

    #[test]
    fn urls_with_credentials_but_not_plain_urls() {
        assert_eq!(
            r("see https://admin:s3cret@db.example.com/x?y=1 now"),
            "see [URL_CREDENTIALS] now"
        );
        assert_eq!(
            r("see https://example.com/a@b"),
            "see https://example.com/a@b"
        );
    }

    #[test]
    fn spans_and_kinds_are_reported_in_order() {
        let text = "x@y.org 或 13912345678";
        let (out, found) = redact(text);
        assert_eq!(out, "[EMAIL] 或 [PHONE]");
        let kinds: Vec<PiiKind> = found.iter().map(|f| f.kind).collect();
        assert_eq!(kinds, [PiiKind::Email, PiiKind::Phone]);
        assert_eq!(&text[found[1].start..found[1].end], "13912345678");
        assert_eq!(redact("nothing here").1, vec![]);
    }
}
