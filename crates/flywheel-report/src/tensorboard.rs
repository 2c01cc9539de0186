//! TensorBoard scalar event files, written without TensorFlow.
//!
//! Layout as Keras's `TensorBoard` callback writes it, so the curves overlay the same way:
//! `DIR/train/events.out.tfevents.*` holds `epoch_loss`, `epoch_accuracy` and
//! `epoch_learning_rate`; `DIR/validation/events.out.tfevents.*` holds `epoch_loss` and
//! `epoch_accuracy`. The step is the 0-based epoch (as Keras does).
//!
//! File format: TFRecord framing (`u64` length, masked CRC32C of the length, data, masked CRC32C
//! of the data, all little-endian) around hand-encoded `tensorflow.Event` protobufs; the first
//! record of each file is `Event{wall_time, file_version: "brain.Event:2"}`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use flywheel_model::EpochRecord;

/// Writes the per-epoch scalars of one training run.
pub struct TensorBoardWriter {
    train: EventFile,
    validation: EventFile,
    error: Option<String>,
}

impl TensorBoardWriter {
    /// Creates `dir/train` and `dir/validation` with a new event file in each.
    pub fn create(dir: &Path) -> std::io::Result<Self> {
        Ok(TensorBoardWriter {
            train: EventFile::create(&dir.join("train"))?,
            validation: EventFile::create(&dir.join("validation"))?,
            error: None,
        })
    }

    /// Appends one epoch's scalars and flushes, so a running `tensorboard` sees them at once.
    /// A write error is remembered (see [`TensorBoardWriter::finish`]) and stops further writes.
    pub fn epoch(&mut self, r: &EpochRecord, learning_rate: f64) {
        if self.error.is_some() {
            return;
        }
        let step = r.epoch.saturating_sub(1) as i64;
        let mut train = vec![("epoch_loss", r.loss)];
        train.extend(r.accuracy.map(|a| ("epoch_accuracy", a)));
        train.push(("epoch_learning_rate", learning_rate));
        let mut val = Vec::new();
        val.extend(r.val_loss.map(|l| ("epoch_loss", l)));
        val.extend(r.val_accuracy.map(|a| ("epoch_accuracy", a)));
        let result = self
            .train
            .scalars(step, &train)
            .and_then(|_| self.validation.scalars(step, &val));
        if let Err(e) = result {
            self.error = Some(e.to_string());
        }
    }

    /// The event files, and the first write error if there was one.
    pub fn finish(self) -> (Vec<PathBuf>, Option<String>) {
        (vec![self.train.path, self.validation.path], self.error)
    }
}

/// One `events.out.tfevents.*` file.
struct EventFile {
    path: PathBuf,
    out: BufWriter<File>,
}

impl EventFile {
    fn create(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let now = wall_time();
        let host = hostname();
        let path = dir.join(format!(
            "events.out.tfevents.{}.{host}.{}.v2",
            now as u64,
            std::process::id()
        ));
        let mut out = BufWriter::new(File::create(&path)?);
        out.write_all(&record(&file_version_event(now)))?;
        out.flush()?;
        Ok(EventFile { path, out })
    }

    fn scalars(&mut self, step: i64, values: &[(&str, f64)]) -> std::io::Result<()> {
        let now = wall_time();
        for (tag, v) in values {
            self.out
                .write_all(&record(&scalar_event(now, step, tag, *v as f32)))?;
        }
        self.out.flush()
    }
}

fn wall_time() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn hostname() -> String {
    let h = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let h: String = h
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
        .collect();
    if h.is_empty() {
        "flywheel".to_string()
    } else {
        h
    }
}

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78).
pub fn crc32c(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut t = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    (c >> 1) ^ 0x82F6_3B78
                } else {
                    c >> 1
                };
                k += 1;
            }
            t[i] = c;
            i += 1;
        }
        t
    };
    let mut crc = !0u32;
    for &b in data {
        crc = TABLE[((crc ^ b as u32) & 0xFF) as usize] ^ (crc >> 8);
    }
    !crc
}

/// TFRecord's masked CRC: rotate right by 15 and add a constant.
pub fn masked_crc(data: &[u8]) -> u32 {
    let c = crc32c(data);
    c.rotate_right(15).wrapping_add(0xA282_EAD8)
}

/// One TFRecord: length, masked CRC of the length, data, masked CRC of the data.
pub fn record(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc(data).to_le_bytes());
    out
}

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A length-delimited field (wire type 2).
fn bytes_field(field: u32, data: &[u8], out: &mut Vec<u8>) {
    varint(u64::from(field << 3 | 2), out);
    varint(data.len() as u64, out);
    out.extend_from_slice(data);
}

/// `Event.wall_time` (field 1, double) and `Event.step` (field 2, int64).
fn event_head(wall_time: f64, step: i64, out: &mut Vec<u8>) {
    out.push(1 << 3 | 1);
    out.extend_from_slice(&wall_time.to_le_bytes());
    if step != 0 {
        out.push(2 << 3);
        varint(step as u64, out);
    }
}

/// `Event{wall_time, file_version: "brain.Event:2"}`.
pub fn file_version_event(wall_time: f64) -> Vec<u8> {
    let mut out = Vec::new();
    event_head(wall_time, 0, &mut out);
    bytes_field(3, b"brain.Event:2", &mut out);
    out
}

/// `Event{wall_time, step, summary: Summary{value: [Value{tag, simple_value}]}}`.
pub fn scalar_event(wall_time: f64, step: i64, tag: &str, value: f32) -> Vec<u8> {
    let mut v = Vec::new();
    bytes_field(1, tag.as_bytes(), &mut v);
    v.push(2 << 3 | 5);
    v.extend_from_slice(&value.to_le_bytes());
    let mut summary = Vec::new();
    bytes_field(1, &v, &mut summary);
    let mut out = Vec::new();
    event_head(wall_time, step, &mut out);
    bytes_field(5, &summary, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_known_values() {
        // RFC 3720 B.4 test vectors and the common check value.
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(&[0xFFu8; 32]), 0x62A8_AB43);
        let inc: Vec<u8> = (0..32).collect();
        assert_eq!(crc32c(&inc), 0x46DD_794E);
        assert_eq!(crc32c(b""), 0);
    }

    #[test]
    fn framing_matches_tensorflow() {
        // The file_version event, field by field: wall_time (1, fixed64), file_version (3).
        let data = file_version_event(0.0);
        assert_eq!(
            data,
            [
                &[0x09][..],
                &[0; 8],
                &[0x1a, 13],
                b"brain.Event:2".as_slice()
            ]
            .concat()
        );
        let rec = record(&data);
        assert_eq!(rec.len(), data.len() + 16);
        assert_eq!(&rec[..8], &(data.len() as u64).to_le_bytes());
        let len_crc = u32::from_le_bytes([rec[8], rec[9], rec[10], rec[11]]);
        assert_eq!(len_crc, masked_crc(&rec[..8]));
        assert_eq!(&rec[12..12 + data.len()], &data[..]);
        let tail = &rec[12 + data.len()..];
        assert_eq!(
            u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]),
            masked_crc(&data)
        );
        // Masking: rotate right by 15 bits, add 0xa282ead8 (wrapping).
        assert_eq!(masked_crc(b"123456789"), 0xC78A_B0E5);
    }

    #[test]
    fn scalar_event_encoding() {
        let e = scalar_event(1.5, 300, "loss", 0.25);
        let mut want = vec![0x09];
        want.extend_from_slice(&1.5f64.to_le_bytes());
        want.extend_from_slice(&[0x10, 0xAC, 0x02]); // step 300 as a varint
                                                     // summary (field 5) { value (field 1) { tag (1) "loss", simple_value (2) 0.25 } }
        let mut value = vec![0x0a, 4];
        value.extend_from_slice(b"loss");
        value.push(0x15);
        value.extend_from_slice(&0.25f32.to_le_bytes());
        let mut summary = vec![0x0a, value.len() as u8];
        summary.extend_from_slice(&value);
        want.push(0x2a);
        want.push(summary.len() as u8);
        want.extend_from_slice(&summary);
        assert_eq!(e, want);
    }

    #[test]
    fn writes_event_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = TensorBoardWriter::create(dir.path()).unwrap();
        let r = EpochRecord {
            epoch: 1,
            loss: 0.5,
            accuracy: Some(0.75),
            val_loss: Some(0.6),
            val_accuracy: Some(0.7),
        };
        w.epoch(&r, 0.001);
        let (files, err) = w.finish();
        assert!(err.is_none());
        assert_eq!(files.len(), 2);
        // Walk the train file's records and check every CRC.
        let bytes = std::fs::read(&files[0]).unwrap();
        let mut at = 0;
        let mut n = 0;
        while at < bytes.len() {
            let len = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) as usize;
            let len_crc = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap());
            assert_eq!(len_crc, masked_crc(&bytes[at..at + 8]));
            let data = &bytes[at + 12..at + 12 + len];
            let crc = u32::from_le_bytes(bytes[at + 12 + len..at + 16 + len].try_into().unwrap());
            assert_eq!(crc, masked_crc(data));
            at += 16 + len;
            n += 1;
        }
        assert_eq!(n, 4); // file_version + loss + accuracy + learning rate
    }
}
