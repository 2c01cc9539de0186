//! Text normalisation and character decoding as the reference build did them
//! (Python codecs with `errors="replace"`).

use encoding_rs::Encoding;

use super::tables::{BIG5_EXCEPTIONS, EUC_KR_EXCEPTIONS, GB2312_EXCEPTIONS, MAC_ROMAN_HIGH};

/// The longest text kept, in characters (Unicode code points).
pub const MAX_CHARS: usize = 5000;

/// Whitespace as Python's `str.isspace()` defines it.
pub(crate) fn py_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n'
            | '\u{b}'
            | '\u{c}'
            | '\r'
            | '\u{1c}'..='\u{1f}'
            | ' '
            | '\u{85}'
            | '\u{a0}'
            | '\u{1680}'
            | '\u{2000}'..='\u{200a}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202f}'
            | '\u{205f}'
            | '\u{3000}'
    )
}

/// Normalises whitespace: CR LF and lone CR become LF, control characters
/// become spaces, runs of spaces / no-break spaces become one space, spaces at
/// line ends are removed, 3+ newlines become 2, and the ends are trimmed.
pub fn normalize(text: &str) -> String {
    // Newlines and control characters, collapsing space runs on the way.
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let c = match c {
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                '\n'
            }
            c if c != '\n' && c.is_control() => ' ',
            '\u{a0}' => ' ',
            c => c,
        };
        if c == '\n' {
            lines.push(std::mem::take(&mut line));
        } else if !(c == ' ' && line.ends_with(' ')) {
            line.push(c);
        }
    }
    lines.push(line);
    let mut out = String::with_capacity(text.len());
    let mut newlines = 0usize;
    for (i, line) in lines.iter().enumerate() {
        if i > 0 {
            newlines += 1;
        }
        let line = line.trim_matches(' ');
        if line.is_empty() {
            continue;
        }
        if !out.is_empty() || newlines > 0 {
            for _ in 0..newlines.min(2) {
                out.push('\n');
            }
        }
        newlines = 0;
        out.push_str(line);
    }
    // Leading newlines were written before the first line; Python's strip() drops them,
    // together with any other leading or trailing whitespace.
    out.trim_matches(py_space).to_string()
}

/// The first [`MAX_CHARS`] characters of `text`.
pub fn truncate(mut text: String) -> String {
    if let Some((idx, _)) = text.char_indices().nth(MAX_CHARS) {
        text.truncate(idx);
    }
    text
}

/// Decodes Python's `mac_roman`.
pub fn decode_mac_roman(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| {
            if b < 0x80 {
                b as char
            } else {
                MAC_ROMAN_HIGH[(b - 0x80) as usize]
            }
        })
        .collect()
}

/// Decodes `cp1252` with `errors="replace"` (the five unassigned bytes become U+FFFD).
pub fn decode_cp1252(bytes: &[u8]) -> String {
    decode_windows(bytes, encoding_rs::WINDOWS_1252)
}

fn decode_latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| b as char).collect()
}

fn decode_ascii(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| if b < 0x80 { b as char } else { '\u{fffd}' })
        .collect()
}

/// Windows code pages as Python decodes them: bytes that the code page leaves
/// unassigned become U+FFFD (the WHATWG tables map them to C1 controls).
fn decode_windows(bytes: &[u8], encoding: &'static Encoding) -> String {
    let (text, _) = encoding.decode_without_bom_handling(bytes);
    text.chars()
        .map(|c| {
            if ('\u{80}'..='\u{9f}').contains(&c) {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect()
}

fn decode_with(bytes: &[u8], encoding: &'static Encoding) -> String {
    encoding.decode_without_bom_handling(bytes).0.into_owned()
}

/// A double-byte code page decoded the way CPython's CJK codecs do it: a pair
/// that the code page does not define gives one U+FFFD and decoding resumes at
/// the second byte. `exceptions` holds CPython's decoding of the pairs where the
/// WHATWG table differs (U+FFFD: not defined).
fn decode_dbcs(
    bytes: &[u8],
    encoding: &'static Encoding,
    valid: fn(u8, u8) -> bool,
    exceptions: &[(u16, char)],
) -> String {
    let mut out = String::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b < 0x80 {
            out.push(b as char);
            i += 1;
            continue;
        }
        if let Some(&t) = bytes.get(i + 1) {
            if valid(b, t) {
                let pair = u16::from(b) << 8 | u16::from(t);
                let c = match exceptions.binary_search_by_key(&pair, |(p, _)| *p) {
                    Ok(k) => Some(exceptions[k].1).filter(|&c| c != '\u{fffd}'),
                    Err(_) => decode_pair(encoding, b, t),
                };
                if let Some(c) = c {
                    out.push(c);
                    i += 2;
                    continue;
                }
            }
        }
        out.push('\u{fffd}');
        i += 1;
    }
    out
}

fn decode_pair(encoding: &'static Encoding, lead: u8, trail: u8) -> Option<char> {
    let pair = [lead, trail];
    let text = encoding.decode_without_bom_handling_and_without_replacement(&pair)?;
    let mut chars = text.chars();
    let c = chars.next()?;
    if chars.next().is_some() || ('\u{e000}'..='\u{f8ff}').contains(&c) {
        return None;
    }
    Some(c)
}

fn gb2312_valid(lead: u8, trail: u8) -> bool {
    (0xa1..=0xf7).contains(&lead) && (0xa1..=0xfe).contains(&trail)
}

fn big5_valid(lead: u8, trail: u8) -> bool {
    (0xa1..=0xf9).contains(&lead)
        && ((0x40..=0x7e).contains(&trail) || (0xa1..=0xfe).contains(&trail))
}

fn euc_kr_valid(lead: u8, trail: u8) -> bool {
    (0xa1..=0xfe).contains(&lead) && (0xa1..=0xfe).contains(&trail)
}

/// ISO-2022-JP as CPython decodes it. The WHATWG decoder reports an error when
/// an escape sequence directly follows another one (as happens when encoded
/// words are joined); CPython does not, so such redundant escapes are dropped.
fn decode_iso2022jp(bytes: &[u8]) -> String {
    fn escape_len(b: &[u8]) -> usize {
        match b {
            [0x1b, b'(', b'B' | b'J' | b'I', ..] | [0x1b, b'$', b'@' | b'B', ..] => 3,
            _ => 0,
        }
    }
    let mut cleaned = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let n = escape_len(&bytes[i..]);
        if n > 0 && escape_len(&bytes[i + n..]) > 0 {
            i += n;
            continue;
        }
        cleaned.push(bytes[i]);
        i += 1;
    }
    decode_with(&cleaned, encoding_rs::ISO_2022_JP)
}

/// Python's `encodings.normalize_encoding`: runs of punctuation become `_`.
fn normalize_encoding(name: &str) -> String {
    let mut out = String::new();
    let mut punct = false;
    for c in name.chars() {
        if c.is_alphanumeric() || c == '.' {
            if punct && !out.is_empty() {
                out.push('_');
            }
            if c.is_ascii() {
                out.push(c.to_ascii_lowercase());
            }
            punct = false;
        } else {
            punct = true;
        }
    }
    out
}

/// The codecs that Python would find for a charset name (the subset that mail
/// uses); `None` stands for Python's `LookupError`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Codec {
    Ascii,
    Latin1,
    Latin5,
    Utf8,
    MacRoman,
    Windows(&'static Encoding),
    Plain(&'static Encoding),
    Gb2312,
    Big5,
    EucKr,
    Iso2022Jp,
}

fn lookup(charset: &str) -> Option<Codec> {
    use encoding_rs as e;
    let name = normalize_encoding(charset);
    let codec = match name.as_str() {
        "ascii" | "us_ascii" | "646" | "ansi_x3.4_1968" | "ansi_x3_4_1968" | "ansi_x3.4_1986"
        | "cp367" | "csascii" | "ibm367" | "iso646_us" | "iso_646.irv_1991" | "iso_ir_6" | "us" => {
            Codec::Ascii
        }
        "latin_1" | "latin1" | "latin" | "l1" | "iso_8859_1" | "iso8859_1" | "8859" | "cp819"
        | "csisolatin1" | "ibm819" | "iso_8859_1_1987" | "iso_ir_100" => Codec::Latin1,
        "iso8859_9" | "iso_8859_9" | "latin5" | "l5" | "csisolatin5" | "iso_ir_148"
        | "iso_8859_9_1989" => Codec::Latin5,
        "utf_8" | "utf8" | "u8" | "utf" | "utf8_ucs2" | "utf8_ucs4" | "cp65001" => Codec::Utf8,
        "mac_roman" | "macroman" | "macintosh" => Codec::MacRoman,
        "cp1250" | "windows_1250" => Codec::Windows(e::WINDOWS_1250),
        "cp1251" | "windows_1251" => Codec::Windows(e::WINDOWS_1251),
        "cp1252" | "windows_1252" => Codec::Windows(e::WINDOWS_1252),
        "cp1253" | "windows_1253" => Codec::Windows(e::WINDOWS_1253),
        "cp1254" | "windows_1254" => Codec::Windows(e::WINDOWS_1254),
        "cp1255" | "windows_1255" => Codec::Windows(e::WINDOWS_1255),
        "cp1256" | "windows_1256" => Codec::Windows(e::WINDOWS_1256),
        "cp1257" | "windows_1257" => Codec::Windows(e::WINDOWS_1257),
        "cp1258" | "windows_1258" => Codec::Windows(e::WINDOWS_1258),
        "iso8859_2" | "iso_8859_2" | "latin2" | "l2" => Codec::Plain(e::ISO_8859_2),
        "iso8859_3" | "iso_8859_3" | "latin3" | "l3" => Codec::Plain(e::ISO_8859_3),
        "iso8859_4" | "iso_8859_4" | "latin4" | "l4" => Codec::Plain(e::ISO_8859_4),
        "iso8859_5" | "iso_8859_5" | "cyrillic" => Codec::Plain(e::ISO_8859_5),
        "iso8859_6" | "iso_8859_6" | "arabic" => Codec::Plain(e::ISO_8859_6),
        "iso8859_7" | "iso_8859_7" | "greek" | "greek8" => Codec::Plain(e::ISO_8859_7),
        "iso8859_8" | "iso_8859_8" | "hebrew" => Codec::Plain(e::ISO_8859_8),
        "iso8859_10" | "iso_8859_10" | "latin6" | "l6" => Codec::Plain(e::ISO_8859_10),
        "iso8859_13" | "iso_8859_13" | "latin7" | "l7" => Codec::Plain(e::ISO_8859_13),
        "iso8859_14" | "iso_8859_14" | "latin8" | "l8" => Codec::Plain(e::ISO_8859_14),
        "iso8859_15" | "iso_8859_15" | "latin9" | "l9" => Codec::Plain(e::ISO_8859_15),
        "iso8859_16" | "iso_8859_16" | "latin10" | "l10" => Codec::Plain(e::ISO_8859_16),
        "koi8_r" | "cskoi8r" => Codec::Plain(e::KOI8_R),
        "koi8_u" => Codec::Plain(e::KOI8_U),
        "gb2312" | "chinese" | "csiso58gb231280" | "euc_cn" | "euccn" | "eucgb2312_cn"
        | "gb2312_1980" | "gb2312_80" | "iso_ir_58" => Codec::Gb2312,
        "gbk" | "936" | "cp936" | "ms936" => Codec::Plain(e::GBK),
        "gb18030" | "gb18030_2000" => Codec::Plain(e::GB18030),
        "big5" | "big5_tw" | "csbig5" => Codec::Big5,
        "cp950" | "950" | "ms950" | "big5hkscs" | "big5_hkscs" | "hkscs" => Codec::Plain(e::BIG5),
        "euc_kr" | "euckr" | "korean" | "ksc5601" | "ks_c_5601" | "ks_c_5601_1987" | "ksx1001"
        | "ks_x_1001" => Codec::EucKr,
        "cp949" | "949" | "ms949" | "uhc" => Codec::Plain(e::EUC_KR),
        "iso2022_jp" | "csiso2022jp" | "iso2022jp" | "iso_2022_jp" => Codec::Iso2022Jp,
        "shift_jis" | "csshiftjis" | "shiftjis" | "sjis" | "s_jis" | "cp932" | "932" | "ms932"
        | "mskanji" | "ms_kanji" => Codec::Plain(e::SHIFT_JIS),
        "euc_jp" | "eucjp" | "ujis" | "u_jis" => Codec::Plain(e::EUC_JP),
        _ => return None,
    };
    Some(codec)
}

/// Decodes bytes the way the reference build decoded a MIME part: no charset
/// and the Latin-1 / ASCII family are read as cp1252, other charsets that
/// Python knows are decoded with `errors="replace"`, and an unknown charset
/// falls back to Latin-1.
pub fn decode_charset(bytes: &[u8], charset: Option<&str>) -> String {
    let charset = charset.map(str::to_ascii_lowercase);
    let treat_as_cp1252 = match charset.as_deref() {
        None => true,
        Some(c) => matches!(
            c,
            "iso-8859-1" | "us-ascii" | "latin-1" | "latin1" | "iso8859-1" | "ascii"
        ),
    };
    if treat_as_cp1252 {
        return decode_cp1252(bytes);
    }
    charset
        .as_deref()
        .and_then(|c| decode_python(bytes, c))
        .unwrap_or_else(|| decode_latin1(bytes))
}

/// Decodes an RFC 2047 header word the way the reference build did: in its
/// declared charset with `errors="replace"` (ASCII when it has none), Latin-1
/// when Python does not know the charset.
pub fn decode_header_word(bytes: &[u8], charset: Option<&str>) -> String {
    match charset {
        None => decode_ascii(bytes),
        Some(c) => decode_python(bytes, c).unwrap_or_else(|| decode_latin1(bytes)),
    }
}

/// `bytes.decode(charset, "replace")` for the codecs Python would find;
/// `None` where Python raises `LookupError`.
pub fn decode_python(bytes: &[u8], charset: &str) -> Option<String> {
    let codec = lookup(charset)?;
    Some(match codec {
        Codec::Ascii => decode_ascii(bytes),
        Codec::Latin1 => decode_latin1(bytes),
        Codec::Latin5 => bytes
            .iter()
            .map(|&b| match b {
                0xd0 => '\u{11e}',
                0xdd => '\u{130}',
                0xde => '\u{15e}',
                0xf0 => '\u{11f}',
                0xfd => '\u{131}',
                0xfe => '\u{15f}',
                b => b as char,
            })
            .collect(),
        Codec::Utf8 => String::from_utf8_lossy(bytes).into_owned(),
        Codec::MacRoman => decode_mac_roman(bytes),
        Codec::Windows(enc) => decode_windows(bytes, enc),
        Codec::Plain(enc) => decode_with(bytes, enc),
        Codec::Gb2312 => decode_dbcs(bytes, encoding_rs::GBK, gb2312_valid, GB2312_EXCEPTIONS),
        Codec::Big5 => decode_dbcs(bytes, encoding_rs::BIG5, big5_valid, BIG5_EXCEPTIONS),
        Codec::EucKr => decode_dbcs(bytes, encoding_rs::EUC_KR, euc_kr_valid, EUC_KR_EXCEPTIONS),
        Codec::Iso2022Jp => decode_iso2022jp(bytes),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_like_the_reference() {
        assert_eq!(
            normalize("  a \t b\r\n\r\n\r\n\r\nc  \n d\u{a0}\u{a0}e "),
            "a b\n\nc\nd e"
        );
        assert_eq!(normalize("x\r\r\r\ny"), "x\n\ny");
        assert_eq!(normalize("\n\n\u{3000}x\u{3000}y \n"), "x\u{3000}y");
        assert_eq!(normalize("a\u{1}b\u{7f}c"), "a b c");
        assert_eq!(normalize(""), "");
        assert_eq!(normalize(" \n \n "), "");
    }

    #[test]
    fn truncates_characters() {
        let s: String = "é".repeat(MAX_CHARS + 3);
        assert_eq!(truncate(s).chars().count(), MAX_CHARS);
        assert_eq!(truncate("abc".to_string()), "abc");
    }

    #[test]
    fn charsets_follow_python() {
        assert_eq!(
            decode_charset(b"caf\xe9 \x93q\x94 \x81", None),
            "café “q” \u{fffd}"
        );
        assert_eq!(decode_charset(b"\x92", Some("iso-8859-1")), "’");
        assert_eq!(decode_charset(b"\x92", Some("DEFAULT")), "\u{92}");
        assert_eq!(decode_charset(b"\xe9\x80", Some("iso-8859-15")), "é\u{80}");
        assert_eq!(decode_charset(b"\xc3\xa9\xff", Some("utf-8")), "é\u{fffd}");
        assert_eq!(decode_charset(b"\xd5\xd1", Some("mac_roman")), "’—");
        assert_eq!(decode_mac_roman(b"\xd5\xd1"), "’—");
        assert_eq!(decode_header_word(b"a\x99", Some("iso-8859-1")), "a\u{99}");
        assert_eq!(decode_header_word(b"a\x99", None), "a\u{fffd}");
        assert_eq!(decode_header_word(b"a\x99", Some("x-unknown")), "a\u{99}");
        assert_eq!(
            decode_charset(b"\xa1\xaa\xb0\xa1", Some("gb2312")),
            "\u{2015}啊"
        );
        assert_eq!(decode_charset(b"\xa4\x40", Some("big5")), "一");
        assert_eq!(decode_charset(b"\xb0\xa1", Some("ks_c_5601-1987")), "가");
        assert_eq!(decode_charset(b"\xa1\xe3\xc6\xa1", Some("big5")), "∼ヾ");
        assert_eq!(
            decode_charset(b"\xa2\xa1x", Some("gb2312")),
            "\u{fffd}\u{fffd}x"
        );
        assert_eq!(
            decode_charset(b"\x1b$B$3\x1b(B\x1b$B$s\x1b(B", Some("iso-2022-jp")),
            "こん"
        );
    }
}
