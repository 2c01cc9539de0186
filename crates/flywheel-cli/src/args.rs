//! Arguments that several commands take, each flag defined once, and the fixed choices as
//! `ValueEnum`s (so help, errors and completions list them) mapped onto the libraries' types.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use flywheel_data::{Format, ReadOptions};
use flywheel_model::{BagLossChoice, LinearLossChoice, OptimizerChoice, Task};
use flywheel_text::{Segmentation, Side};

/// How to read a data file.
#[derive(Args, Debug, Clone)]
pub struct DataArgs {
    /// Column (CSV/TSV header or JSONL key) holding the text.
    #[arg(long, default_value = "text")]
    pub text_column: String,
    /// Column holding the label.
    #[arg(long, default_value = "label")]
    pub label_column: String,
    /// File format (default: from the file extension).
    #[arg(long, value_enum)]
    pub format: Option<FormatArg>,
}

impl DataArgs {
    /// The reader's options.
    pub fn options(&self) -> ReadOptions {
        ReadOptions {
            format: self.format.map(Format::from),
            text_column: self.text_column.clone(),
            label_column: self.label_column.clone(),
        }
    }
}

/// `--threads`.
#[derive(Args, Debug, Clone, Copy)]
pub struct ThreadsArg {
    /// Worker threads (default: all cores). The same --seed and --threads give the same result.
    #[arg(long)]
    pub threads: Option<usize>,
}

impl ThreadsArg {
    /// The threads asked for, or all cores.
    pub fn count(self) -> usize {
        threads(self.threads)
    }
}

/// The threads asked for, or all cores.
pub fn threads(requested: Option<usize>) -> usize {
    requested.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    })
}

/// `--seed`.
#[derive(Args, Debug, Clone, Copy)]
pub struct SeedArg {
    /// Seed of every random choice (validation split, initialisation, shuffling, dropout,
    /// search): the same seed gives the same result.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

/// What the labels are: `--task` and `--label-sep`.
#[derive(Args, Debug, Clone)]
pub struct LabelArgs {
    /// The task (default: inferred from the labels: 2 → binary, more → multiclass, several on
    /// a row → multilabel).
    #[arg(long, value_enum)]
    pub task: Option<TaskArg>,
    /// Separator of several labels in one field (multilabel).
    #[arg(long, default_value = "|")]
    pub label_sep: String,
}

impl LabelArgs {
    /// The task asked for, if any.
    pub fn task(&self) -> Option<Task> {
        self.task.map(Task::from)
    }
}

/// `--encoder`.
#[derive(Args, Debug, Clone)]
pub struct EncoderArg {
    /// A pretrained sentence encoder: a Hugging Face model directory or the name of one fetched
    /// by `flywheel encoders fetch` (all-minilm-l6-v2). train: the encoder of --model encoder;
    /// autotune: lets the search try it (every text is embedded once, within the budget).
    #[arg(long, value_name = "DIR|NAME")]
    pub encoder: Option<PathBuf>,
}

/// A data file's format.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatArg {
    /// Comma-separated values with a header row.
    Csv,
    /// Tab-separated values with a header row.
    Tsv,
    /// One JSON object per line.
    Jsonl,
    /// `__label__a text...` lines.
    Fasttext,
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Format {
        match f {
            FormatArg::Csv => Format::Csv,
            FormatArg::Tsv => Format::Tsv,
            FormatArg::Jsonl => Format::Jsonl,
            FormatArg::Fasttext => Format::FastText,
        }
    }
}

/// A task.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskArg {
    /// Two classes.
    Binary,
    /// One of several classes.
    Multiclass,
    /// Any number of labels per text.
    Multilabel,
    /// A number.
    Regression,
}

impl From<TaskArg> for Task {
    fn from(t: TaskArg) -> Task {
        match t {
            TaskArg::Binary => Task::Binary,
            TaskArg::Multiclass => Task::Multiclass,
            TaskArg::Multilabel => Task::Multilabel,
            TaskArg::Regression => Task::Regression,
        }
    }
}

/// A tokenizer.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenizerArg {
    /// The reference Keras tokenizer's rules.
    Keras,
    /// Unicode word boundaries.
    Word,
    /// Every character a token.
    Char,
    /// Every CJK character a token.
    Cjk,
    /// Chinese word segmentation.
    Jieba,
}

impl From<TokenizerArg> for Segmentation {
    fn from(t: TokenizerArg) -> Segmentation {
        match t {
            TokenizerArg::Keras => Segmentation::Keras,
            TokenizerArg::Word => Segmentation::Word,
            TokenizerArg::Char => Segmentation::Char,
            TokenizerArg::Cjk => Segmentation::Cjk,
            TokenizerArg::Jieba => Segmentation::Jieba,
        }
    }
}

/// An optimiser.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptimizerArg {
    /// Adam, as Keras's.
    Adam,
    /// Stochastic gradient descent on mini-batches.
    Sgd,
    /// Full-batch gradient descent.
    Gd,
}

impl From<OptimizerArg> for OptimizerChoice {
    fn from(o: OptimizerArg) -> OptimizerChoice {
        match o {
            OptimizerArg::Adam => OptimizerChoice::Adam,
            OptimizerArg::Sgd => OptimizerChoice::Sgd,
            OptimizerArg::Gd => OptimizerChoice::Gd,
        }
    }
}

/// Which end of a sequence padding or truncation applies to.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum SideArg {
    /// The start.
    Pre,
    /// The end.
    Post,
}

impl From<SideArg> for Side {
    fn from(s: SideArg) -> Side {
        match s {
            SideArg::Pre => Side::Pre,
            SideArg::Post => Side::Post,
        }
    }
}

/// An output loss: the fastText family's or the linear families'.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossArg {
    /// fasttext: softmax over classes.
    Softmax,
    /// fasttext: one sigmoid per label.
    Ova,
    /// fasttext: hierarchical softmax.
    Hs,
    /// linear, encoder: logistic regression.
    Logistic,
    /// linear, encoder: one-vs-rest squared hinge (a linear SVM).
    SquaredHinge,
}

impl LossArg {
    /// The fastText family's loss, if this is one.
    pub fn bag(self) -> Option<BagLossChoice> {
        match self {
            LossArg::Softmax => Some(BagLossChoice::Softmax),
            LossArg::Ova => Some(BagLossChoice::Ova),
            LossArg::Hs => Some(BagLossChoice::Hs),
            LossArg::Logistic | LossArg::SquaredHinge => None,
        }
    }

    /// The linear families' loss, if this is one.
    pub fn linear(self) -> Option<LinearLossChoice> {
        match self {
            LossArg::Logistic => Some(LinearLossChoice::Logistic),
            LossArg::SquaredHinge => Some(LinearLossChoice::SquaredHinge),
            LossArg::Softmax | LossArg::Ova | LossArg::Hs => None,
        }
    }

    /// The name on the command line.
    pub fn name(self) -> String {
        self.to_possible_value()
            .map(|v| v.get_name().to_string())
            .unwrap_or_default()
    }
}

/// Whether personal data is redacted before a text is stored.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedactArg {
    /// Replace e-mail addresses, phone, card and ID numbers, IPs and URL credentials by typed
    /// placeholders.
    Pii,
    /// Store texts as they came.
    None,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_keep_the_libraries_names() {
        for f in FormatArg::value_variants() {
            let name = f.to_possible_value().map(|v| v.get_name().to_string());
            assert_eq!(name.as_deref(), Some(Format::from(*f).name()));
        }
        for t in TaskArg::value_variants() {
            let name = t.to_possible_value().map(|v| v.get_name().to_string());
            assert_eq!(name, Some(Task::from(*t).to_string()));
        }
        for t in TokenizerArg::value_variants() {
            let name = t.to_possible_value().map(|v| v.get_name().to_string());
            assert_eq!(name, Some(Segmentation::from(*t).to_string()));
        }
        for l in LossArg::value_variants() {
            let lib = match (l.bag(), l.linear()) {
                (Some(b), None) => format!("{b:?}").to_lowercase(),
                (None, Some(lin)) => lin.name().to_string(),
                other => panic!("{l:?} maps to {other:?}"),
            };
            assert_eq!(l.name(), lib);
        }
    }
}
