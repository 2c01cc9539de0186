//! `flywheel explain` and `flywheel history`: looking inside a model.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::{Context, Result};
use flywheel_model::{explain_label, Artifact, EpochRecord, Explanation};
use flywheel_report::curves::learning_curves_svg;

use crate::charts;

/// `flywheel explain MODEL TEXT [--label L] [--json]`.
pub fn cmd_explain(model: &Path, text: &str, label: Option<&str>, json: bool) -> Result<()> {
    let artifact = Artifact::load(model)?;
    let e = explain_label(&artifact.pipeline, text, label)?;
    if json {
        println!("{}", serde_json::to_string(&e)?);
        return Ok(());
    }
    let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    print!("{}", render_explanation(text, &e, colour));
    Ok(())
}

/// Strength bucket 1..=4 of an attribution relative to the largest one (0: negligible).
fn level(a: f32, max: f32) -> usize {
    if max <= 0.0 {
        return 0;
    }
    let s = a.abs() / max;
    if s < 0.05 {
        0
    } else {
        ((s * 4.0).ceil() as usize).clamp(1, 4)
    }
}

/// The explanation for a person: the text with tokens coloured by sign and strength (green
/// supports the label, red speaks against it; ANSI 256 colours, only when `colour`), then a
/// table of tokens by attribution.
pub fn render_explanation(text: &str, e: &Explanation, colour: bool) -> String {
    const POS: [u8; 4] = [194, 157, 114, 34];
    const NEG: [u8; 4] = [224, 217, 210, 160];
    let max = e
        .tokens
        .iter()
        .map(|t| t.attribution.abs())
        .fold(0.0f32, f32::max);
    let mut out = format!(
        "{} (score {:.4}); attribution = drop of the score when the token is removed ({})\n\n",
        e.label, e.score, e.method
    );
    if colour {
        let chars: Vec<char> = text.chars().collect();
        let mut at = 0;
        out.push_str("  ");
        for t in &e.tokens {
            out.extend(&chars[at.min(t.start)..t.start]);
            let seg: String = chars[t.start..t.end].iter().collect();
            let lv = level(t.attribution, max);
            if lv == 0 {
                out.push_str(&seg);
            } else {
                let bg = if t.attribution > 0.0 { POS } else { NEG }[lv - 1];
                let fg = if lv == 4 { 15 } else { 16 };
                out.push_str(&format!("\x1b[38;5;{fg};48;5;{bg}m{seg}\x1b[0m"));
            }
            at = t.end;
        }
        out.extend(&chars[at.min(chars.len())..]);
        out.push_str("\n\n");
    }
    let mut ranked: Vec<usize> = (0..e.tokens.len()).collect();
    ranked.sort_by(|&a, &b| {
        e.tokens[b]
            .attribution
            .abs()
            .total_cmp(&e.tokens[a].attribution.abs())
            .then(a.cmp(&b))
    });
    let width = e
        .tokens
        .iter()
        .map(|t| t.text.chars().count())
        .max()
        .unwrap_or(5)
        .clamp(5, 30);
    out.push_str(&format!(
        "  {:<width$}  {:>9}  {:>11}  note\n",
        "token", "chars", "attribution"
    ));
    for &i in &ranked {
        let t = &e.tokens[i];
        let note = match (t.in_vocabulary, t.truncated) {
            (_, true) => "cut by max_len",
            (false, _) => "not in vocabulary",
            _ => "",
        };
        let shown: String = t.text.chars().take(30).collect();
        let pad = width.saturating_sub(shown.chars().count());
        let value = format!("{:+.4}", t.attribution);
        let value = if colour && level(t.attribution, max) > 0 {
            let c = if t.attribution > 0.0 { 34 } else { 160 };
            format!("\x1b[38;5;{c}m{value:>11}\x1b[0m")
        } else {
            format!("{value:>11}")
        };
        out.push_str(&format!(
            "  {shown}{}  {:>9}  {value}  {note}\n",
            " ".repeat(pad),
            format!("{}..{}", t.start, t.end),
        ));
    }
    if e.tokens.is_empty() {
        out.push_str("  (no tokens)\n");
    }
    out
}

/// `flywheel history MODEL [--png FILE]`: the stored training history as a table; with `--png`
/// the learning curves too (an `.svg` name writes SVG instead, which needs no font).
pub fn cmd_history(model: &Path, png: Option<&Path>) -> Result<()> {
    let artifact = Artifact::load(model)?;
    let Some(t) = &artifact.meta.training else {
        anyhow::bail!(
            "{} holds no training history (it was not trained by flywheel)",
            model.display()
        );
    };
    print!("{}", history_table(&t.history, t.best_epoch));
    if t.stopped_early {
        println!("(stopped early)");
    }
    if let Some(path) = png {
        write_curves(&t.history, path)?;
        eprintln!("Learning curves written to {}", path.display());
    }
    Ok(())
}

/// Learning curves to a PNG (or SVG, by extension) file. Only PNG needs a font.
pub fn write_curves(history: &[EpochRecord], path: &Path) -> Result<()> {
    let is_svg = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("svg"));
    if is_svg {
        let svg = learning_curves_svg(history);
        std::fs::write(path, svg).with_context(|| format!("writing {}", path.display()))
    } else {
        charts::png(&charts::learning_curves(history), 560, 380, path)
    }
}

/// `epoch  loss  accuracy  val_loss  val_accuracy` rows (`-` where a value is absent).
pub fn history_table(history: &[EpochRecord], best_epoch: Option<usize>) -> String {
    let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
    let mut out = format!(
        "{:>5}  {:>8}  {:>8}  {:>8}  {:>12}\n",
        "epoch", "loss", "accuracy", "val_loss", "val_accuracy"
    );
    for r in history {
        out.push_str(&format!(
            "{:>5}  {:>8}  {:>8}  {:>8}  {:>12}{}\n",
            r.epoch,
            f(Some(r.loss)),
            f(r.accuracy),
            f(r.val_loss),
            f(r.val_accuracy),
            if best_epoch == Some(r.epoch) {
                "  <- kept (best)"
            } else {
                ""
            }
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use flywheel_model::TokenAttribution;

    fn tok(text: &str, start: usize, end: usize, a: f32) -> TokenAttribution {
        TokenAttribution {
            text: text.into(),
            start,
            end,
            attribution: a,
            in_vocabulary: true,
            truncated: false,
        }
    }

    #[test]
    fn renders_plain_and_coloured() {
        let text = "好 day, bad";
        let e = Explanation {
            label: "pos".into(),
            score: 0.9,
            method: "occlusion".into(),
            tokens: vec![
                tok("好", 0, 1, 0.5),
                tok("day", 2, 5, 0.0),
                tok("bad", 7, 10, -0.2),
            ],
        };
        let plain = render_explanation(text, &e, false);
        assert!(!plain.contains('\x1b'));
        assert!(plain.contains("+0.5000") && plain.contains("-0.2000"));
        let coloured = render_explanation(text, &e, true);
        assert!(coloured.contains("\x1b[38;5;15;48;5;34m好\x1b[0m"));
        assert!(coloured.contains(" day, "));
        assert!(coloured.contains("48;5;217mbad"));
    }

    #[test]
    fn history_marks_best_epoch() {
        let h = vec![
            EpochRecord {
                epoch: 1,
                loss: 0.5,
                accuracy: Some(0.8),
                val_loss: None,
                val_accuracy: None,
            },
            EpochRecord {
                epoch: 2,
                loss: 0.25,
                accuracy: Some(0.9),
                val_loss: None,
                val_accuracy: None,
            },
        ];
        let t = history_table(&h, Some(2));
        assert!(t.lines().nth(2).unwrap().ends_with("<- kept (best)"));
        assert!(t.contains("0.2500"));
    }
}
