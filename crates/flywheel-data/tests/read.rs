//! Reading labelled files and texts: formats, line numbers and error messages.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use flywheel_data::{
    read_labelled, read_texts, read_texts_from, DataError, Format, ReadOptions, Record,
};
use sha2::{Digest, Sha256};

fn write(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn labelled(path: &Path) -> Result<Vec<Record>, DataError> {
    read_labelled(path, &ReadOptions::default()).map(|d| d.records)
}

fn rec(text: &str, labels: &[&str], line: u64) -> Record {
    Record {
        text: text.to_string(),
        labels: labels.iter().map(|l| l.to_string()).collect(),
        line,
    }
}

#[test]
fn format_from_extension_and_name() {
    let cases = [
        ("a.csv", Some(Format::Csv)),
        ("a.TSV", Some(Format::Tsv)),
        ("a.tab", Some(Format::Tsv)),
        ("a.jsonl", Some(Format::Jsonl)),
        ("a.ndjson", Some(Format::Jsonl)),
        ("a.json", Some(Format::Jsonl)),
        ("a.txt", Some(Format::FastText)),
        ("a.ft", Some(Format::FastText)),
        ("a.parquet", None),
        ("noext", None),
    ];
    for (name, want) in cases {
        assert_eq!(Format::from_path(Path::new(name)), want, "{name}");
    }
    for f in [Format::Csv, Format::Tsv, Format::Jsonl, Format::FastText] {
        assert_eq!(Format::from_str(f.name()).unwrap(), f);
        assert_eq!(f.to_string().parse::<Format>().unwrap(), f);
    }
    let err = "xml".parse::<Format>().unwrap_err().to_string();
    assert!(err.contains("csv, tsv, jsonl, fasttext"), "{err}");
}

#[test]
fn csv_quoting_bom_line_numbers_and_digest() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = b"\xEF\xBB\xBFid,text,label\n1,\"multi\nline, with \"\"quotes\"\"\",spam\n2,plain,ham\r\n3,,ham\n";
    let path = write(&dir, "d.csv", bytes);
    let ds = read_labelled(&path, &ReadOptions::default()).unwrap();
    assert_eq!(ds.format, Format::Csv);
    assert_eq!(ds.source, path);
    assert_eq!(
        ds.records,
        vec![
            rec("multi\nline, with \"quotes\"", &["spam"], 2),
            rec("plain", &["ham"], 4),
            rec("", &["ham"], 5),
        ]
    );
    let digest = Sha256::digest(bytes);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(ds.sha256, hex);
}

#[test]
fn tsv_with_custom_columns() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "d.tsv",
        b"category\tbody\nsport\tgoal scored, 2-1\nnews\t\"quoted\ttab\"\n",
    );
    let opts = ReadOptions {
        text_column: "body".into(),
        label_column: "category".into(),
        ..ReadOptions::default()
    };
    let ds = read_labelled(&path, &opts).unwrap();
    assert_eq!(
        ds.records,
        vec![
            rec("goal scored, 2-1", &["sport"], 2),
            rec("quoted\ttab", &["news"], 3)
        ]
    );
}

#[test]
fn jsonl_label_kinds() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "d.jsonl",
        br#"{"text": "a", "label": "pos"}

{"text": "b", "label": 3.5, "extra": {"x": 1}}
{"label": true, "text": "c"}
   {"text": "d", "label": ["x", 2, false]}
"#,
    );
    assert_eq!(
        labelled(&path).unwrap(),
        vec![
            rec("a", &["pos"], 1),
            rec("b", &["3.5"], 3),
            rec("c", &["true"], 4),
            rec("d", &["x", "2", "false"], 5),
        ]
    );
}

#[test]
fn fasttext_labels() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "d.txt",
        b"__label__a __label__b  two labels here\n\n__label__c one\r\n",
    );
    assert_eq!(
        labelled(&path).unwrap(),
        vec![
            rec("two labels here", &["a", "b"], 1),
            rec("one", &["c"], 3)
        ]
    );
}

fn err_of(name: &str, bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, name, bytes);
    let err = labelled(&path).unwrap_err().to_string();
    assert!(err.contains(name), "error should name the file: {err}");
    err
}

#[test]
fn errors_name_file_line_and_fix() {
    let e = err_of("missing_col.csv", b"body,label\nx,y\n");
    assert!(
        e.contains("line 1") && e.contains("\"text\"") && e.contains("\"body\", \"label\""),
        "{e}"
    );

    let e = err_of("empty.csv", b"");
    assert!(e.contains("no records"), "{e}");
    let e = err_of("header_only.csv", b"text,label\n");
    assert!(e.contains("no records"), "{e}");

    let e = err_of("utf8.csv", b"text,label\nok,a\n\"two\nli\xffnes\",b\n");
    assert!(e.contains("line 4") && e.contains("UTF-8"), "{e}");

    let e = err_of("nolabel.csv", b"text,label\nok,a\nbad,\n");
    assert!(
        e.contains("line 3") && e.contains("label") && e.contains("empty"),
        "{e}"
    );

    let e = err_of(
        "crlf.csv",
        b"text,label\r\nok,a\r\n\"x\r\ny\",b\r\nbad,\r\n",
    );
    assert!(e.contains("line 5"), "{e}");

    let e = err_of("fields.csv", b"text,label\nok,a\nx,y,z\n");
    assert!(
        e.contains("line 3") && e.contains("expected 2") && e.contains("found 3"),
        "{e}"
    );

    let e = err_of(
        "bad.jsonl",
        b"{\"text\": \"a\", \"label\": \"x\"}\n{\"text\": \"b\",\n",
    );
    assert!(e.contains("line 2") && e.contains("malformed JSON"), "{e}");

    let e = err_of("array.jsonl", b"[1, 2]\n");
    assert!(e.contains("line 1") && e.contains("not an object"), "{e}");

    let e = err_of("key.jsonl", b"{\"body\": \"a\", \"label\": \"x\"}\n");
    assert!(
        e.contains("\"text\"") && e.contains("\"body\", \"label\""),
        "{e}"
    );

    let e = err_of("null.jsonl", b"{\"text\": \"a\", \"label\": null}\n");
    assert!(e.contains("line 1") && e.contains("\"label\""), "{e}");

    let e = err_of("plain.txt", b"__label__a fine\njust text\n");
    assert!(e.contains("line 2") && e.contains("__label__"), "{e}");

    let e = err_of("unknown.xyz", b"text,label\n");
    assert!(e.contains("unknown data format"), "{e}");

    let missing = Path::new("/definitely/not/here.csv");
    let e = labelled(missing).unwrap_err();
    assert!(matches!(e, DataError::Io { .. }));
    assert!(e.to_string().contains("/definitely/not/here.csv"));
}

#[test]
fn texts_for_prediction() {
    let dir = tempfile::tempdir().unwrap();
    let csv = write(&dir, "p.csv", b"id,text\n1,hello\n2,\"a, b\"\n");
    assert_eq!(
        read_texts(&csv, &ReadOptions::default()).unwrap(),
        ["hello", "a, b"]
    );
    let ft = write(&dir, "p.txt", b"__label__x labelled\nplain line\n\n");
    assert_eq!(
        read_texts(&ft, &ReadOptions::default()).unwrap(),
        ["labelled", "plain line"]
    );
    let other = write(&dir, "p.lst", b"\xEF\xBB\xBFfirst\r\n\n  \nsecond\n");
    assert_eq!(
        read_texts(&other, &ReadOptions::default()).unwrap(),
        ["first", "second"]
    );
    let jsonl: &[u8] = b"{\"text\": \"j\"}\n";
    assert_eq!(
        read_texts_from(jsonl, Some(Format::Jsonl), &ReadOptions::default()).unwrap(),
        ["j"]
    );
    let plain: &[u8] = b"one\ntwo\n";
    assert_eq!(
        read_texts_from(plain, None, &ReadOptions::default()).unwrap(),
        ["one", "two"]
    );
    let empty: &[u8] = b"\n\n";
    let e = read_texts_from(empty, None, &ReadOptions::default()).unwrap_err();
    assert!(e.to_string().contains("<stdin>"), "{e}");
}
