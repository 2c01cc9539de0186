//! CSV export of store rows, safe to open in a spreadsheet.

use std::borrow::Cow;
use std::io::{self, Write};

/// The cell as written: a value that a spreadsheet could take for a formula (one starting with
/// `=`, `+`, `-`, `@`, a tab or a carriage return) gets a `'` in front (OWASP's advice against
/// CSV injection). Negative numbers are guarded too, so keep them out of exports that
/// must stay numeric.
pub fn csv_cell(value: &str) -> Cow<'_, str> {
    if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        Cow::Owned(format!("'{value}"))
    } else {
        Cow::Borrowed(value)
    }
}

/// Writes `header` and then each of `rows` as CSV records to `out` (`,`-separated, `\n`-ended,
/// quoted where a cell holds `,`, `"`, `\r` or `\n`), every cell through [`csv_cell`]; returns
/// `out`, flushed. Every record must have as many cells as `header`. For example
/// `write_csv(Vec::new(), &UsageRow::COLUMNS, rows.iter().map(UsageRow::cells))` gives the
/// bytes of a usage export.
pub fn write_csv<W, R, C>(out: W, header: &[&str], rows: R) -> io::Result<W>
where
    W: Write,
    R: IntoIterator,
    R::Item: IntoIterator<Item = C>,
    C: AsRef<str>,
{
    let mut writer = csv::Writer::from_writer(out);
    writer.write_record(header.iter().map(|h| csv_cell(h).into_owned()))?;
    for row in rows {
        writer.write_record(
            row.into_iter()
                .map(|cell| csv_cell(cell.as_ref()).into_owned()),
        )?;
    }
    writer.into_inner().map_err(|e| e.into_error())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn export(rows: &[&[&str]]) -> String {
        let bytes = write_csv(Vec::new(), &["a", "b"], rows.iter().map(|r| r.iter())).unwrap();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn formulas_are_defused() {
        for formula in ["=1+2", "+1", "-1", "@SUM(A1)", "\t=1", "\r=1"] {
            assert_eq!(csv_cell(formula), format!("'{formula}"), "{formula:?}");
        }
        for plain in ["", "a=b", "1-2", " =1", "acme"] {
            assert_eq!(csv_cell(plain), plain);
        }
        assert_eq!(
            export(&[&["=HYPERLINK(\"http://x\")", "@x"], &["-2", "+3"]]),
            "a,b\n\"'=HYPERLINK(\"\"http://x\"\")\",'@x\n'-2,'+3\n"
        );
    }

    #[test]
    fn quotes_commas_and_newlines_are_quoted() {
        assert_eq!(
            export(&[
                &["say \"hi\"", "a,b"],
                &["two\nlines", "cr\rhere"],
                &["plain", ""],
            ]),
            "a,b\n\"say \"\"hi\"\"\",\"a,b\"\n\"two\nlines\",\"cr\rhere\"\nplain,\n"
        );
        // A formula guard and quoting together; the quoted cell reads back as written.
        let out = export(&[&["=1,2", "x"]]);
        assert_eq!(out, "a,b\n\"'=1,2\",x\n");
        let mut reader = csv::Reader::from_reader(out.as_bytes());
        let back: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(&back[0][0], "'=1,2");
    }

    #[test]
    fn usage_rows_export_with_their_header() {
        let row = crate::UsageRow {
            tenant: "acme".into(),
            key_prefix: "fw_abcdefgh".into(),
            model: "m".into(),
            day: "2026-01-31".into(),
            requests: 2,
            texts: 3,
            characters: 40,
            training_seconds: 7,
        };
        let bytes = write_csv(Vec::new(), &crate::UsageRow::COLUMNS, [row.cells()]).unwrap();
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            "tenant,key_prefix,model,day,requests,texts,characters,training_seconds\n\
             acme,fw_abcdefgh,m,2026-01-31,2,3,40,7\n"
        );
    }
}
