//! Training progress for people: a progress bar on a terminal, one Keras-like line per epoch.

use std::io::IsTerminal;

use flywheel_model::{EpochRecord, TrainEvent};
use indicatif::{ProgressBar, ProgressStyle};

/// Renders [`TrainEvent`]s on stderr.
pub struct TrainReporter {
    bar: Option<ProgressBar>,
    epochs: usize,
}

impl TrainReporter {
    /// A reporter; the bar appears only when stderr is a terminal.
    pub fn new() -> Self {
        TrainReporter {
            bar: None,
            epochs: 0,
        }
    }

    /// Handles one event.
    pub fn on_event(&mut self, ev: TrainEvent<'_>) {
        match ev {
            TrainEvent::Start {
                train_rows,
                val_rows,
                batches,
                epochs,
                parameters,
                task,
                labels,
                vocab,
            } => {
                self.epochs = epochs;
                eprintln!(
                    "Task {task} ({}), vocabulary {vocab}, {parameters} parameters; training on {train_rows} rows, validating on {val_rows}",
                    if labels.is_empty() { "no labels".to_string() } else { labels.join(" / ") }
                );
                if std::io::stderr().is_terminal() {
                    let bar = ProgressBar::new(batches as u64);
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{prefix} [{bar:30}] {pos}/{len} {msg} ({eta})",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                    );
                    self.bar = Some(bar);
                }
            }
            TrainEvent::Batch {
                epoch, done, loss, ..
            } => {
                if let Some(bar) = &self.bar {
                    if done == 1 {
                        bar.reset();
                        bar.set_prefix(format!("Epoch {epoch}/{}", self.epochs));
                    }
                    bar.set_position(done as u64);
                    bar.set_message(format!("loss {loss:.4}"));
                }
            }
            TrainEvent::Epoch { record, seconds } => {
                let line = epoch_line(record, self.epochs, Some(seconds));
                match &self.bar {
                    Some(bar) => bar.println(line),
                    None => eprintln!("{line}"),
                }
            }
            TrainEvent::FineTune {
                step,
                steps,
                loss,
                seconds,
            } => {
                if step == steps || step % steps.div_ceil(10).max(1) == 0 {
                    eprintln!(
                        "Fine-tuning the encoder: step {step}/{steps} - loss: {loss:.4} - {seconds:.1}s"
                    );
                }
            }
            TrainEvent::EarlyStop { epoch, best_epoch } => {
                let line = format!(
                    "Early stopping after epoch {epoch}; keeping the weights of epoch {best_epoch}"
                );
                match &self.bar {
                    Some(bar) => bar.println(line),
                    None => eprintln!("{line}"),
                }
            }
        }
    }

    /// Removes the bar.
    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// `Epoch 3/10 - 1.2s - loss: 0.1234 - accuracy: 0.9512 - val_loss: ... - val_accuracy: ...`
pub fn epoch_line(r: &EpochRecord, epochs: usize, seconds: Option<f64>) -> String {
    let mut s = format!("Epoch {}/{epochs}", r.epoch);
    if let Some(t) = seconds {
        s.push_str(&format!(" - {t:.2}s"));
    }
    s.push_str(&format!(" - loss: {:.4}", r.loss));
    if let Some(a) = r.accuracy {
        s.push_str(&format!(" - accuracy: {a:.4}"));
    }
    if let Some(l) = r.val_loss {
        s.push_str(&format!(" - val_loss: {l:.4}"));
    }
    if let Some(a) = r.val_accuracy {
        s.push_str(&format!(" - val_accuracy: {a:.4}"));
    }
    s
}
