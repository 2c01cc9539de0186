//! RFC 822 / MIME messages parsed the way CPython's `email` package does it
//! (`email.message_from_bytes` with the default `compat32` policy), so that the
//! text taken from each message matches the reference build.
//!
//! This is a port of `email.feedparser` (line splitting, header blocks,
//! multipart boundaries, nested `message/*` parts), of the parameter parsing in
//! `email.message`, of `get_payload(decode=True)` and of `email.header.decode_header`.

use super::text::{decode_header_word, py_space};

/// A parsed message or MIME part.
#[derive(Debug, Clone)]
pub struct Message {
    /// (name, value) as in the source, value unfolded the `compat32` way.
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    payload: Payload,
    default_type: &'static str,
}

#[derive(Debug, Clone)]
enum Payload {
    None,
    Text(Vec<u8>),
    Parts(Vec<Message>),
}

impl Message {
    /// Parses a whole message.
    pub fn parse(bytes: &[u8]) -> Message {
        let mut input = Input::new(bytes);
        parsegen(&mut input, "text/plain")
    }

    /// The first header called `name` (ASCII case-insensitive), as Python's
    /// `str()` of it shows (bytes that are not ASCII become U+FFFD).
    pub fn get(&self, name: &str) -> Option<String> {
        self.get_raw(name).map(ascii_or_replacement)
    }

    fn get_raw(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v.as_slice())
    }

    /// Whether the payload is a list of parts (`multipart/*` or `message/*`).
    pub fn is_multipart(&self) -> bool {
        matches!(self.payload, Payload::Parts(_))
    }

    /// `get_content_type()`.
    pub fn content_type(&self) -> String {
        let Some(value) = self.get("content-type") else {
            return self.default_type.to_string();
        };
        let ctype = value
            .split(';')
            .next()
            .unwrap_or("")
            .trim_matches(py_space)
            .to_lowercase();
        if ctype.matches('/').count() != 1 {
            return "text/plain".to_string();
        }
        ctype
    }

    fn maintype(&self) -> String {
        let ct = self.content_type();
        ct.split('/').next().unwrap_or("").to_string()
    }

    /// `get_param(param)` of the Content-Type header, unquoted.
    fn param(&self, param: &str) -> Option<String> {
        let value = self.get("content-type")?;
        let params = parse_params(&value);
        params
            .into_iter()
            .find(|(k, _)| k.to_lowercase() == param.to_lowercase())
            .map(|(_, v)| unquote(&v))
    }

    /// `get_content_charset()`: lower-cased, `None` when absent or not ASCII.
    pub fn content_charset(&self) -> Option<String> {
        let charset = self.param("charset")?;
        charset.is_ascii().then(|| charset.to_lowercase())
    }

    fn boundary(&self) -> Option<String> {
        let b = self.param("boundary")?;
        Some(unquote(&b).trim_end_matches(py_space).to_string())
    }

    /// Depth-first walk over this part and all its sub-parts (`walk()`).
    pub fn walk(&self) -> Vec<&Message> {
        let mut out = vec![self];
        if let Payload::Parts(parts) = &self.payload {
            for p in parts {
                out.extend(p.walk());
            }
        }
        out
    }

    /// `get_payload(decode=True)`: the body with its transfer encoding undone.
    pub fn decoded_payload(&self) -> Option<Vec<u8>> {
        let Payload::Text(body) = &self.payload else {
            return None;
        };
        let cte = self
            .get("content-transfer-encoding")
            .unwrap_or_default()
            .to_lowercase();
        Some(match cte.as_str() {
            "quoted-printable" => decode_qp(body),
            "base64" => {
                let joined: Vec<u8> = body
                    .iter()
                    .copied()
                    .filter(|&b| b != b'\r' && b != b'\n')
                    .collect();
                decode_b(&joined)
            }
            _ => body.clone(),
        })
    }

    /// Drops one trailing line end from the payload of the message that
    /// CPython's parser created last while parsing this part (the newline
    /// before a boundary belongs to the boundary).
    fn strip_last_created_eol(&mut self) {
        let maintype = self.maintype();
        if maintype == "multipart" {
            return;
        }
        match &mut self.payload {
            Payload::Parts(parts) if maintype == "message" => {
                if let Some(last) = parts.last_mut() {
                    last.strip_last_created_eol();
                }
            }
            Payload::Text(body) => strip_one_eol(body),
            _ => {}
        }
    }
}

/// Header bytes as Python's `str(Header)` shows them: non-ASCII bytes become U+FFFD.
fn ascii_or_replacement(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| if b < 0x80 { b as char } else { '\u{fffd}' })
        .collect()
}

/// `email.message._parseparam` followed by the (name, value) split of
/// `_get_params_preserve`.
fn parse_params(value: &str) -> Vec<(String, String)> {
    let mut s = format!(";{value}");
    let mut plist = Vec::new();
    while let Some(rest) = s.strip_prefix(';') {
        let rest = rest.to_string();
        let mut end = rest.find(';');
        while let Some(e) = end {
            if e == 0 {
                break;
            }
            let quotes = rest[..e].matches('"').count();
            let escaped = rest[..e].matches("\\\"").count();
            if (quotes - escaped) % 2 == 0 {
                break;
            }
            end = rest[e + 1..].find(';').map(|p| e + 1 + p);
        }
        let end = end.unwrap_or(rest.len());
        let mut f = rest[..end].to_string();
        if let Some(i) = f.find('=') {
            f = format!(
                "{}={}",
                f[..i].trim_matches(py_space).to_lowercase(),
                f[i + 1..].trim_matches(py_space)
            );
        }
        plist.push(f.trim_matches(py_space).to_string());
        s = rest[end..].to_string();
    }
    plist
        .into_iter()
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (
                k.trim_matches(py_space).to_string(),
                v.trim_matches(py_space).to_string(),
            ),
            None => (p.trim_matches(py_space).to_string(), String::new()),
        })
        .collect()
}

/// `email.utils.unquote`.
fn unquote(s: &str) -> String {
    if s.chars().count() > 1 {
        if s.starts_with('"') && s.ends_with('"') {
            return s[1..s.len() - 1]
                .replace("\\\\", "\\")
                .replace("\\\"", "\"");
        }
        if s.starts_with('<') && s.ends_with('>') {
            return s[1..s.len() - 1].to_string();
        }
    }
    s.to_string()
}

/// The line source of `email.feedparser.BufferedSubFile`: lines keep their
/// `\r\n`, `\r` or `\n`; a stack of "false EOF" matchers ends nested parts.
struct Input<'a> {
    lines: Vec<&'a [u8]>,
    pos: usize,
    pushed: Vec<&'a [u8]>,
    eof: Vec<EofMatcher>,
}

enum EofMatcher {
    Boundary(Vec<u8>),
    BlankLine,
}

impl EofMatcher {
    fn matches(&self, line: &[u8]) -> bool {
        match self {
            EofMatcher::Boundary(sep) => boundary_match(sep, line).is_some(),
            EofMatcher::BlankLine => starts_with_newline(line),
        }
    }
}

fn starts_with_newline(line: &[u8]) -> bool {
    matches!(line.first(), Some(b'\r') | Some(b'\n'))
}

/// `boundaryre.match(line)`: `Some(is_close)` when the line is the boundary.
fn boundary_match(separator: &[u8], line: &[u8]) -> Option<bool> {
    let rest = line.strip_prefix(separator)?;
    let tail_ok = |r: &[u8]| {
        let start = r
            .iter()
            .position(|&b| b != b' ' && b != b'\t')
            .unwrap_or(r.len());
        matches!(&r[start..], b"" | b"\n" | b"\r" | b"\r\n")
    };
    if let Some(after) = rest.strip_prefix(b"--") {
        if tail_ok(after) {
            return Some(true);
        }
    }
    tail_ok(rest).then_some(false)
}

/// Splits into lines on `\r\n`, `\r` and `\n`, keeping the line ends.
fn split_lines(bytes: &[u8]) -> Vec<&[u8]> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\n' => {
                lines.push(&bytes[start..=i]);
                start = i + 1;
            }
            b'\r' => {
                let end = if bytes.get(i + 1) == Some(&b'\n') {
                    i + 1
                } else {
                    i
                };
                lines.push(&bytes[start..=end]);
                i = end;
                start = end + 1;
            }
            _ => {}
        }
        i += 1;
    }
    if start < bytes.len() {
        lines.push(&bytes[start..]);
    }
    lines
}

impl<'a> Input<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Input {
            lines: split_lines(bytes),
            pos: 0,
            pushed: Vec::new(),
            eof: Vec::new(),
        }
    }

    /// The next line, or `None` at the (real or false) end.
    fn readline(&mut self) -> Option<&'a [u8]> {
        let line = match self.pushed.pop() {
            Some(l) => l,
            None => {
                let l = *self.lines.get(self.pos)?;
                self.pos += 1;
                l
            }
        };
        if self.eof.iter().any(|m| m.matches(line)) {
            self.pushed.push(line);
            return None;
        }
        Some(line)
    }

    fn unreadline(&mut self, line: &'a [u8]) {
        self.pushed.push(line);
    }

    fn rest(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(line) = self.readline() {
            out.extend_from_slice(line);
        }
        out
    }
}

/// `headerRE`: `^(From |[\041-\071\073-\176]*:|[\t ])`.
fn is_header_line(line: &[u8]) -> bool {
    if line.starts_with(b"From ") || matches!(line.first(), Some(b'\t') | Some(b' ')) {
        return true;
    }
    let name_len = line
        .iter()
        .position(|&b| !((0x21..=0x39).contains(&b) || (0x3b..=0x7e).contains(&b)))
        .unwrap_or(line.len());
    line.get(name_len) == Some(&b':')
}

/// `_parse_headers` with `compat32.header_source_parse`.
fn parse_headers<'a>(input: &mut Input<'a>, lines: &[&'a [u8]]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut headers = Vec::new();
    let mut current: Vec<&[u8]> = Vec::new();
    let finish = |current: &mut Vec<&[u8]>, headers: &mut Vec<(Vec<u8>, Vec<u8>)>| {
        if current.is_empty() {
            return;
        }
        let first = current[0];
        let colon = first.iter().position(|&b| b == b':').unwrap_or(first.len());
        let name = first[..colon].to_vec();
        let after = first.get(colon + 1..).unwrap_or_default();
        let start = after
            .iter()
            .position(|&b| b != b' ' && b != b'\t')
            .unwrap_or(after.len());
        let mut value = after[start..].to_vec();
        for l in &current[1..] {
            value.extend_from_slice(l);
        }
        while matches!(value.last(), Some(b'\r') | Some(b'\n')) {
            value.pop();
        }
        headers.push((name, value));
        current.clear();
    };
    for (lineno, &line) in lines.iter().enumerate() {
        if matches!(line.first(), Some(b' ') | Some(b'\t')) {
            if !current.is_empty() {
                current.push(line);
            }
            continue;
        }
        finish(&mut current, &mut headers);
        if line.starts_with(b"From ") {
            if lineno == 0 {
                continue;
            }
            if lineno == lines.len() - 1 {
                input.unreadline(line);
                return headers;
            }
            continue;
        }
        if line.first() == Some(&b':') {
            continue;
        }
        current.push(line);
    }
    finish(&mut current, &mut headers);
    headers
}

/// `FeedParser._parsegen` for one message.
fn parsegen(input: &mut Input<'_>, default_type: &'static str) -> Message {
    let mut header_lines = Vec::new();
    while let Some(line) = input.readline() {
        if !is_header_line(line) {
            if !starts_with_newline(line) {
                input.unreadline(line);
            }
            break;
        }
        header_lines.push(line);
    }
    let headers = parse_headers(input, &header_lines);
    let mut msg = Message {
        headers,
        payload: Payload::None,
        default_type,
    };
    let ctype = msg.content_type();
    if ctype == "message/delivery-status" {
        let mut blocks = Vec::new();
        loop {
            input.eof.push(EofMatcher::BlankLine);
            blocks.push(parsegen(input, "text/plain"));
            input.eof.pop();
            input.readline();
            match input.readline() {
                None => break,
                Some(line) => input.unreadline(line),
            }
        }
        msg.payload = Payload::Parts(blocks);
        return msg;
    }
    let maintype = msg.maintype();
    if maintype == "message" {
        let inner = parsegen(input, "text/plain");
        msg.payload = Payload::Parts(vec![inner]);
        return msg;
    }
    if maintype != "multipart" {
        msg.payload = Payload::Text(input.rest());
        return msg;
    }
    let Some(boundary) = msg.boundary() else {
        msg.payload = Payload::Text(input.rest());
        return msg;
    };
    let child_default = if ctype == "multipart/digest" {
        "message/rfc822"
    } else {
        "text/plain"
    };
    let mut separator = b"--".to_vec();
    separator.extend_from_slice(boundary.as_bytes());
    let mut parts: Vec<Message> = Vec::new();
    let mut preamble: Vec<&[u8]> = Vec::new();
    let mut capturing_preamble = true;
    while let Some(line) = input.readline() {
        match boundary_match(&separator, line) {
            Some(true) => break,
            Some(false) => {
                if capturing_preamble {
                    capturing_preamble = false;
                    input.unreadline(line);
                    continue;
                }
                // Skip repeated boundary lines.
                loop {
                    match input.readline() {
                        Some(l) if boundary_match(&separator, l).is_some() => continue,
                        Some(l) => {
                            input.unreadline(l);
                            break;
                        }
                        None => break,
                    }
                }
                input.eof.push(EofMatcher::Boundary(separator.clone()));
                let mut part = parsegen(input, child_default);
                input.eof.pop();
                part.strip_last_created_eol();
                parts.push(part);
            }
            None => preamble.push(line),
        }
    }
    if capturing_preamble {
        // No part boundary: the lines seen are the payload; the rest is dropped.
        msg.payload = Payload::Text(preamble.concat());
        input.rest();
        return msg;
    }
    // Epilogue (ignored) up to the end of this part.
    input.rest();
    msg.payload = Payload::Parts(parts);
    msg
}

fn strip_one_eol(body: &mut Vec<u8>) {
    if body.ends_with(b"\r\n") {
        body.truncate(body.len() - 2);
    } else if matches!(body.last(), Some(b'\r') | Some(b'\n')) {
        body.pop();
    }
}

/// `binascii.a2b_qp` (quoted-printable, not in header mode).
fn decode_qp(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    let n = data.len();
    while i < n {
        if data[i] == b'=' {
            i += 1;
            if i >= n {
                break;
            }
            if data[i] == b'\n' || data[i] == b'\r' {
                if data[i] != b'\n' {
                    while i < n && data[i] != b'\n' {
                        i += 1;
                    }
                }
                if i < n {
                    i += 1;
                }
            } else if data[i] == b'=' {
                out.push(b'=');
                i += 1;
            } else if i + 1 < n && data[i].is_ascii_hexdigit() && data[i + 1].is_ascii_hexdigit() {
                out.push((hex_val(data[i]) << 4) | hex_val(data[i + 1]));
                i += 2;
            } else {
                out.push(b'=');
            }
        } else {
            out.push(data[i]);
            i += 1;
        }
    }
    out
}

fn hex_val(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        b'A'..=b'F' => b - b'A' + 10,
        _ => 0,
    }
}

fn b64_value(b: u8) -> Option<u8> {
    match b {
        b'A'..=b'Z' => Some(b - b'A'),
        b'a'..=b'z' => Some(b - b'a' + 26),
        b'0'..=b'9' => Some(b - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// `binascii.a2b_base64` in its lenient mode; `None` for Python's `binascii.Error`.
fn a2b_base64(data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(data.len() / 4 * 3);
    let mut quad = 0u8;
    let mut left = 0u8;
    let mut pads = 0u8;
    for &c in data {
        if c == b'=' {
            if quad >= 2 {
                pads += 1;
                if quad + pads >= 4 {
                    return Some(out);
                }
            }
            continue;
        }
        let Some(v) = b64_value(c) else {
            continue;
        };
        pads = 0;
        match quad {
            0 => {
                quad = 1;
                left = v;
            }
            1 => {
                quad = 2;
                out.push((left << 2) | (v >> 4));
                left = v & 0x0f;
            }
            2 => {
                quad = 3;
                out.push((left << 4) | (v >> 2));
                left = v & 0x03;
            }
            _ => {
                quad = 0;
                out.push((left << 6) | v);
                left = 0;
            }
        }
    }
    (quad == 0).then_some(out)
}

/// `email._encoded_words.decode_b` as `get_payload(decode=True)` uses it.
fn decode_b(encoded: &[u8]) -> Vec<u8> {
    let pad_err = encoded.len() % 4;
    let mut padded = encoded.to_vec();
    if pad_err != 0 {
        padded.extend_from_slice(&b"==="[..4 - pad_err]);
    }
    let strict_alphabet = {
        let body_end = padded.iter().rposition(|&b| b != b'=').map_or(0, |p| p + 1);
        padded.len() - body_end <= 2 && padded[..body_end].iter().all(|&b| b64_value(b).is_some())
    };
    if strict_alphabet {
        if let Some(v) = a2b_base64(&padded) {
            return v;
        }
    }
    if let Some(v) = a2b_base64(encoded) {
        return v;
    }
    let mut extra = encoded.to_vec();
    extra.extend_from_slice(b"==");
    a2b_base64(&extra).unwrap_or_else(|| encoded.to_vec())
}

/// One piece of a decoded header: text as is, or bytes in a charset.
enum HeaderChunk {
    Text(String),
    Bytes(Vec<u8>, Option<String>),
}

/// An RFC 2047 encoded word found in a line: (start, end, charset, encoding, text).
struct EncodedWord<'a> {
    start: usize,
    end: usize,
    charset: &'a str,
    encoding: char,
    text: &'a str,
}

/// The next match of `email.header.ecre` in `s` at or after `from`.
fn find_encoded_word(s: &str, from: usize) -> Option<EncodedWord<'_>> {
    let mut at = from;
    while let Some(p) = s.get(at..)?.find("=?") {
        let start = at + p;
        let cs_start = start + 2;
        if let Some(q) = s[cs_start..].find('?') {
            let q = cs_start + q;
            let enc = s[q + 1..].chars().next();
            if let Some(enc @ ('q' | 'Q' | 'b' | 'B')) = enc {
                if s[q + 2..].starts_with('?') {
                    let text_start = q + 3;
                    if let Some(e) = s[text_start..].find("?=") {
                        let text = &s[text_start..text_start + e];
                        if !text.contains('\n') {
                            return Some(EncodedWord {
                                start,
                                end: text_start + e + 2,
                                charset: &s[cs_start..q],
                                encoding: enc.to_ascii_lowercase(),
                                text,
                            });
                        }
                    }
                }
            }
        }
        at = start + 1;
    }
    None
}

/// `str.splitlines()` (without the line ends).
fn py_splitlines(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut iter = s.char_indices().peekable();
    while let Some((i, c)) = iter.next() {
        let is_break = matches!(
            c,
            '\n' | '\r'
                | '\u{b}'
                | '\u{c}'
                | '\u{1c}'
                | '\u{1d}'
                | '\u{1e}'
                | '\u{85}'
                | '\u{2028}'
                | '\u{2029}'
        );
        if is_break {
            out.push(&s[start..i]);
            let mut next = i + c.len_utf8();
            if c == '\r' {
                if let Some((j, '\n')) = iter.peek().copied() {
                    iter.next();
                    next = j + 1;
                }
            }
            start = next;
        }
    }
    if start < s.len() {
        out.push(&s[start..]);
    }
    out
}

/// `bytes(s, 'raw-unicode-escape')`.
fn raw_unicode_escape(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    for c in s.chars() {
        let v = c as u32;
        if v < 0x100 {
            out.push(v as u8);
        } else if v < 0x10000 {
            out.extend_from_slice(format!("\\u{v:04x}").as_bytes());
        } else {
            out.extend_from_slice(format!("\\U{v:08x}").as_bytes());
        }
    }
    out
}

/// `email.quoprimime.header_decode`.
fn q_decode(s: &str) -> String {
    let s = s.replace('_', " ");
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if b[i] == b'='
            && b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
            && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit)
        {
            out.push(((hex_val(b[i + 1]) << 4) | hex_val(b[i + 2])) as char);
            i += 3;
        } else {
            let c = s[i..].chars().next().unwrap_or('\u{fffd}');
            out.push(c);
            i += c.len_utf8().max(1);
        }
    }
    out
}

/// `email.header.decode_header`; `None` where Python raises `HeaderParseError`.
fn decode_header(header: &str) -> Option<Vec<HeaderChunk>> {
    if find_encoded_word(header, 0).is_none() {
        return Some(vec![HeaderChunk::Text(header.to_string())]);
    }
    // (text, encoding, charset); encoding None means unencoded.
    let mut words: Vec<(String, Option<char>, Option<String>)> = Vec::new();
    for line in py_splitlines(header) {
        let mut first = true;
        let mut at = 0;
        loop {
            let word = find_encoded_word(line, at);
            let un_end = word.as_ref().map_or(line.len(), |w| w.start);
            let mut unencoded = &line[at..un_end];
            if first {
                unencoded = unencoded.trim_start_matches(py_space);
                first = false;
            }
            if !unencoded.is_empty() {
                words.push((unencoded.to_string(), None, None));
            }
            match word {
                Some(w) => {
                    words.push((
                        w.text.to_string(),
                        Some(w.encoding),
                        Some(w.charset.to_lowercase()),
                    ));
                    at = w.end;
                }
                None => break,
            }
        }
    }
    let mut drop = Vec::new();
    for n in 2..words.len() {
        let ws = &words[n - 1].0;
        if words[n].1.is_some()
            && words[n - 2].1.is_some()
            && !ws.is_empty()
            && ws.chars().all(py_space)
        {
            drop.push(n - 1);
        }
    }
    for d in drop.into_iter().rev() {
        words.remove(d);
    }
    let mut decoded: Vec<(Vec<u8>, Option<String>)> = Vec::new();
    for (text, encoding, charset) in words {
        let bytes = match encoding {
            None => raw_unicode_escape(&text),
            Some('q') => raw_unicode_escape(&q_decode(&text)),
            Some(_) => {
                let pad = text.chars().count() % 4;
                let mut t = raw_unicode_escape(&text);
                if pad != 0 {
                    t.extend_from_slice(&b"==="[..4 - pad]);
                }
                a2b_base64(&t)?
            }
        };
        decoded.push((bytes, charset));
    }
    let mut collapsed: Vec<HeaderChunk> = Vec::new();
    let mut last: Option<(Vec<u8>, Option<String>)> = None;
    for (word, charset) in decoded {
        last = Some(match last.take() {
            None => (word, charset),
            Some((lw, lc)) if lc != charset => {
                collapsed.push(HeaderChunk::Bytes(lw, lc));
                (word, charset)
            }
            Some((mut lw, None)) => {
                lw.push(b' ');
                lw.extend_from_slice(&word);
                (lw, None)
            }
            Some((mut lw, lc)) => {
                lw.extend_from_slice(&word);
                (lw, lc)
            }
        });
    }
    if let Some((lw, lc)) = last {
        collapsed.push(HeaderChunk::Bytes(lw, lc));
    }
    Some(collapsed)
}

/// The Subject header decoded as the reference build did it (encoded words
/// decoded in their charsets, folding kept), or `""` without a Subject.
pub fn decoded_subject(msg: &Message) -> String {
    let Some(subject) = msg.get("subject") else {
        return String::new();
    };
    match decode_header(&subject) {
        Some(chunks) => chunks
            .into_iter()
            .map(|c| match c {
                HeaderChunk::Text(t) => t,
                HeaderChunk::Bytes(b, cs) => decode_header_word(&b, cs.as_deref()),
            })
            .collect(),
        None => subject,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_and_folded_subject() {
        let raw =
            b"From x@y  Mon Jan 1 00:00:00 2002\nSubject: Re: a long\n    subject\nX: 1\n\nbody\n";
        let m = Message::parse(raw);
        assert_eq!(m.get("SUBJECT").as_deref(), Some("Re: a long\n    subject"));
        assert_eq!(decoded_subject(&m), "Re: a long\n    subject");
        assert_eq!(m.content_type(), "text/plain");
        assert_eq!(m.decoded_payload(), Some(b"body\n".to_vec()));
    }

    #[test]
    fn encoded_words() {
        let m = Message::parse(b"Subject: =?iso-8859-1?q?caf=E9?= =?utf-8?b?w6k=?= ok\n\n");
        assert_eq!(decoded_subject(&m), "café\u{e9} ok");
        let m = Message::parse(b"Subject: Hi \xe9t\xe9\n\n");
        assert_eq!(decoded_subject(&m), "Hi \u{fffd}t\u{fffd}");
    }

    #[test]
    fn multipart_parts_and_encodings() {
        let raw = b"Content-Type: multipart/alternative; boundary=\"b1\"\r\n\r\npreamble\r\n--b1\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\ncaf=E9 =\r\nsoft\r\n--b1\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\nPGI+aGk8L2I+\r\n--b1--\r\nepilogue\r\n";
        let m = Message::parse(raw);
        let parts = m.walk();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[1].content_type(), "text/plain");
        assert_eq!(parts[1].content_charset().as_deref(), Some("iso-8859-1"));
        assert_eq!(parts[1].decoded_payload(), Some(b"caf\xe9 soft".to_vec()));
        assert_eq!(parts[2].decoded_payload(), Some(b"<b>hi</b>".to_vec()));
    }

    #[test]
    fn base64_and_qp_edge_cases() {
        assert_eq!(decode_b(b"aGk"), b"hi");
        assert_eq!(decode_b(b"a G k = ="), b"hi");
        assert_eq!(decode_qp(b"a=3Db=\nc=zz=="), b"a=bc=zz=");
    }
}
