//! `flywheel train`: the flags, the spec and training config they ask for, and the training
//! run with its progress output and TensorBoard logs.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use flywheel_data::read_labelled;
use flywheel_model::families::{self, Setting};
use flywheel_model::{train, Artifact, Family, ModelSpec, TrainConfig};
use flywheel_text::{Segmentation, Side};

use crate::args::{
    DataArgs, EncoderArg, LabelArgs, LossArg, OptimizerArg, SeedArg, SideArg, ThreadsArg,
    TokenizerArg,
};
use crate::{encoder_dir, progress, tensorboard};

/// Flags of `flywheel train`.
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Labelled training data.
    pub data: PathBuf,
    /// Where to write the model.
    #[arg(short, long)]
    output: PathBuf,
    /// Hyper-parameter preset; `keras-lstm` is exactly the reference Keras model
    /// (Tokenizer(10000) → pad 100 → Embedding(10000,16) → LSTM(16, dropout 0.2,
    /// recurrent dropout 0.2) → Dense; Adam; 10 epochs; batch 32; validation split 0.2).
    #[arg(long, default_value = "keras-lstm")]
    preset: String,
    /// Model family: lstm (the reference; the preset's), gru (the reference with a GRU),
    /// bilstm (bidirectional LSTM, padding masked), cnn (TextCNN: 100 filters of widths 3, 4, 5,
    /// ReLU, max over time, dropout 0.5), fasttext (mean of word and hashed n-gram embeddings,
    /// linear classifier, SGD; fastText's defaults: dim 100, 5 epochs, lr 0.1, no validation
    /// split), linear (TF-IDF of words and bigrams + logistic regression by L-BFGS, C = 1, no
    /// validation split) or encoder (a pretrained sentence encoder, --encoder, and logistic
    /// regression on its vectors; no validation split) or setfit (the encoder fine-tuned on
    /// pairs of the training texts, SetFit's defaults, then the same head; for few labels) or
    /// zeroshot (each label's similarity to the text; the data only calibrates the softmax;
    /// `flywheel models create` makes one with no data).
    #[arg(long = "model", value_name = "FAMILY")]
    family: Option<Family>,
    #[command(flatten)]
    encoder: EncoderArg,
    /// encoder: put TF-IDF word and bigram features (as --model linear) beside the encoder's
    /// vector in the regression.
    #[arg(long)]
    with_ngrams: bool,
    /// zeroshot: one-line label descriptions, a `LABEL: DESCRIPTION` per line; a label's
    /// prototype is the mean of its templated name's vector and its description's.
    #[arg(long, value_name = "FILE")]
    descriptions: Option<PathBuf>,
    /// zeroshot: a sentence with {} where the label name goes (repeatable) [default: "This
    /// sentence is {}"].
    #[arg(long = "template", value_name = "TEXT")]
    templates: Vec<String>,
    /// setfit: pairs per training text and kind (SetFit's num_iterations) [default: every
    /// pair of texts once, the rarer kind repeated to match (SetFit's oversampling)].
    #[arg(long)]
    pair_iterations: Option<usize>,
    /// setfit: passes over the pairs [default: 1].
    #[arg(long)]
    body_epochs: Option<usize>,
    /// setfit: the encoder's peak learning rate (linear warm-up over the first 10 % of steps,
    /// then linear decay) [default: 2e-5].
    #[arg(long)]
    body_lr: Option<f64>,
    /// setfit: pairs per fine-tuning step [default: 16].
    #[arg(long)]
    body_batch: Option<usize>,
    /// setfit: most word pieces of a text while fine-tuning (long texts train faster; the
    /// head and predictions read the encoder's full length) [default: the encoder's maximum].
    #[arg(long)]
    max_pieces: Option<usize>,
    /// Tokenizer: keras (the reference's rules), word (Unicode word boundaries), char, cjk
    /// (every CJK character a token), jieba (Chinese word segmentation). All but keras apply
    /// NFKC and lower-casing. Default: keras for lstm, word for fasttext; cjk for either when
    /// the training texts are mostly CJK.
    #[arg(long, value_enum)]
    tokenizer: Option<TokenizerArg>,
    /// Fold every digit to 0 before tokenising, so numbers are read by their shape (phone
    /// numbers, prices, years). Needs a Unicode tokenizer (word, char, cjk, jieba).
    #[arg(long)]
    fold_digits: bool,
    /// fasttext: longest word n-gram [default: 1].
    #[arg(long)]
    word_ngrams: Option<usize>,
    /// fasttext, linear: hash buckets for word and character n-grams [default: 2000000;
    /// linear: 2^30, only buckets seen in training get a row].
    #[arg(long)]
    buckets: Option<usize>,
    /// fasttext: shortest character n-gram [default: 0].
    #[arg(long)]
    minn: Option<usize>,
    /// fasttext: longest character n-gram; 0 = none [default: 0].
    #[arg(long)]
    maxn: Option<usize>,
    /// fasttext: embedding width (alias of --embed-dim) [default: 100].
    #[arg(long)]
    dim: Option<usize>,
    /// fasttext: softmax, ova (one sigmoid per label) or hs (hierarchical softmax)
    /// [default: softmax; ova for multilabel]. linear, encoder: logistic or squared-hinge (a
    /// one-vs-rest L2-loss linear SVM, as scikit-learn's LinearSVC; binary and multi-class)
    /// [default: logistic].
    #[arg(long, value_enum)]
    loss: Option<LossArg>,
    /// linear: inverse regularisation strength, as scikit-learn's C [default: 1].
    #[arg(long)]
    c: Option<f64>,
    /// linear: L-BFGS iterations at most [default: 500].
    #[arg(long)]
    max_iter: Option<usize>,
    /// linear: weigh classes inversely to their frequency (scikit-learn's
    /// class_weight="balanced"), which favours macro-F1 on imbalanced labels.
    #[arg(long)]
    balanced: bool,
    /// linear: drop words and n-grams found in fewer training texts than this (scikit-learn's
    /// min_df) [default: 2].
    #[arg(long)]
    min_df: Option<usize>,
    #[command(flatten)]
    labels: LabelArgs,
    /// Passes over the data [preset: 10].
    #[arg(long)]
    epochs: Option<usize>,
    /// Sequences per update [preset: 32].
    #[arg(long)]
    batch_size: Option<usize>,
    /// The optimiser [preset: adam].
    #[arg(long, value_enum)]
    optimizer: Option<OptimizerArg>,
    /// Learning rate [default: 0.001 for adam, 0.01 for sgd/gd].
    #[arg(long)]
    lr: Option<f64>,
    /// Momentum for sgd/gd [default: 0].
    #[arg(long)]
    momentum: Option<f64>,
    /// Fraction of rows held out for validation: the last ones, before shuffling [preset: 0.2].
    #[arg(long)]
    validation_split: Option<f64>,
    /// Tokens kept per text [preset: 100].
    #[arg(long)]
    max_len: Option<usize>,
    /// Vocabulary: the num_words-1 most frequent words [preset: 10000].
    #[arg(long)]
    num_words: Option<usize>,
    /// Embedding width [preset: 16].
    #[arg(long)]
    embed_dim: Option<usize>,
    /// Units of the recurrent layer (lstm, gru; per direction for bilstm) [preset: 16].
    #[arg(long)]
    hidden: Option<usize>,
    /// Input dropout of the recurrent layer; for cnn, dropout on the pooled features
    /// [preset: 0.2; cnn: 0.5].
    #[arg(long)]
    dropout: Option<f32>,
    /// Recurrent dropout (lstm, gru, bilstm) [preset: 0.2].
    #[arg(long)]
    recurrent_dropout: Option<f32>,
    /// Mask the padding (Keras mask_zero=True): the recurrent layer carries its state over
    /// padding unchanged, so predictions do not depend on padding length or side (lstm, gru,
    /// bilstm) [default: off; on for bilstm].
    #[arg(long, conflicts_with = "no_mask")]
    mask: bool,
    /// Do not mask the padding (the default for lstm and gru).
    #[arg(long)]
    no_mask: bool,
    /// cnn: filters per kernel width [default: 100].
    #[arg(long)]
    filters: Option<usize>,
    /// cnn: kernel widths, comma-separated [default: 3,4,5].
    #[arg(long, value_delimiter = ',')]
    kernel_sizes: Option<Vec<usize>>,
    /// Which end is padded [preset: pre].
    #[arg(long, value_enum)]
    padding: Option<SideArg>,
    /// Which end is cut: pre keeps the last tokens, post the first [preset: pre].
    #[arg(long, value_enum)]
    truncating: Option<SideArg>,
    /// Every character is a token (useful for Chinese).
    #[arg(long)]
    char_level: bool,
    /// Token standing for out-of-vocabulary words (default: they are dropped).
    #[arg(long)]
    oov_token: Option<String>,
    /// Keep case.
    #[arg(long)]
    no_lower: bool,
    #[command(flatten)]
    seed: SeedArg,
    #[command(flatten)]
    threads: ThreadsArg,
    /// Early stopping: epochs without a better validation loss before stopping.
    #[arg(long)]
    patience: Option<usize>,
    /// With --patience, keep the last weights instead of the best epoch's.
    #[arg(long)]
    no_restore_best: bool,
    /// Write TensorBoard event files (DIR/train, DIR/validation) with the per-epoch loss,
    /// accuracy and learning rate: `tensorboard --logdir DIR`.
    #[arg(long, value_name = "DIR")]
    tensorboard: Option<PathBuf>,
    #[command(flatten)]
    data_args: DataArgs,
}

/// The spec and config the arguments ask for.
pub fn settings(args: &TrainArgs) -> Result<(ModelSpec, TrainConfig)> {
    if args.preset != "keras-lstm" {
        bail!("unknown preset '{}': available: keras-lstm", args.preset);
    }
    let family = args.family.unwrap_or(Family::Lstm);
    let fam = families::of(family);
    let mut cfg = fam.default_config();
    let mut spec = fam.default_spec();
    // Each flag that only some families read, refused for the others with the flag named.
    let only = [
        ("--max-len", args.max_len.is_some(), Setting::SequenceLength),
        ("--padding", args.padding.is_some(), Setting::SequenceLength),
        (
            "--truncating",
            args.truncating.is_some(),
            Setting::SequenceLength,
        ),
        ("--hidden", args.hidden.is_some(), Setting::Hidden),
        ("--dropout", args.dropout.is_some(), Setting::Dropout),
        (
            "--recurrent-dropout",
            args.recurrent_dropout.is_some(),
            Setting::RecurrentDropout,
        ),
        ("--mask", args.mask, Setting::Mask),
        ("--no-mask", args.no_mask, Setting::Mask),
        ("--filters", args.filters.is_some(), Setting::Convolution),
        (
            "--kernel-sizes",
            args.kernel_sizes.is_some(),
            Setting::Convolution,
        ),
        (
            "--batch-size",
            args.batch_size.is_some(),
            Setting::MiniBatches,
        ),
        (
            "--optimizer",
            args.optimizer.is_some(),
            Setting::MiniBatches,
        ),
        ("--patience", args.patience.is_some(), Setting::MiniBatches),
        ("--epochs", args.epochs.is_some(), Setting::Epochs),
        ("--lr", args.lr.is_some(), Setting::Epochs),
        ("--word-ngrams", args.word_ngrams.is_some(), Setting::Ngrams),
        ("--buckets", args.buckets.is_some(), Setting::Ngrams),
        ("--minn", args.minn.is_some(), Setting::Ngrams),
        ("--maxn", args.maxn.is_some(), Setting::Ngrams),
        ("--dim", args.dim.is_some(), Setting::BagDim),
        ("--c", args.c.is_some(), Setting::Regression),
        ("--max-iter", args.max_iter.is_some(), Setting::Regression),
        ("--balanced", args.balanced, Setting::Regression),
        ("--min-df", args.min_df.is_some(), Setting::Regression),
        (
            "--encoder",
            args.encoder.encoder.is_some(),
            Setting::Encoder,
        ),
        ("--with-ngrams", args.with_ngrams, Setting::Encoder),
        (
            "--pair-iterations",
            args.pair_iterations.is_some(),
            Setting::FineTune,
        ),
        (
            "--body-epochs",
            args.body_epochs.is_some(),
            Setting::FineTune,
        ),
        ("--body-lr", args.body_lr.is_some(), Setting::FineTune),
        ("--body-batch", args.body_batch.is_some(), Setting::FineTune),
        ("--max-pieces", args.max_pieces.is_some(), Setting::FineTune),
        (
            "--descriptions",
            args.descriptions.is_some(),
            Setting::Prototypes,
        ),
        (
            "--template",
            !args.templates.is_empty(),
            Setting::Prototypes,
        ),
    ];
    for (flag, given, setting) in only {
        if given && !fam.accepts(setting) {
            bail!(
                "{flag} applies to --model {}, not {family}",
                families::accepting(setting)
            );
        }
    }
    if fam.accepts(Setting::Encoder) {
        let Some(dir) = &args.encoder.encoder else {
            bail!("--model {family} needs --encoder DIR (a model directory)");
        };
        let mut e = flywheel_model::EncoderSpec::new(encoder_dir(dir)?);
        e.ngrams = args.with_ngrams;
        spec.encoder = Some(e);
    }
    if let Some(z) = spec.zero_shot.as_mut() {
        if let Some(path) = &args.descriptions {
            z.descriptions = flywheel_model::families::zeroshot::read_descriptions(path)?;
        }
        if !args.templates.is_empty() {
            z.templates = args.templates.clone();
        }
    }
    if let Some(ft) = spec.fine_tune.as_mut() {
        ft.pair_iterations = args.pair_iterations.or(ft.pair_iterations);
        ft.epochs = args.body_epochs.unwrap_or(ft.epochs);
        ft.lr = args.body_lr.unwrap_or(ft.lr);
        ft.batch = args.body_batch.unwrap_or(ft.batch);
        ft.max_pieces = args.max_pieces.or(ft.max_pieces);
    }
    if !fam.uses_ngrams(&spec) {
        if let Some((flag, _, _)) = only
            .iter()
            .find(|(_, given, setting)| *given && *setting == Setting::Ngrams)
        {
            bail!("{flag} applies to --model {family} with --with-ngrams only");
        }
    }
    if let Some(l) = args.loss {
        if fam.accepts(Setting::BagLoss) {
            spec.bag.loss = l.bag().with_context(|| {
                format!(
                    "--loss {} is not a loss of --model {family}: use softmax, ova or hs",
                    l.name()
                )
            })?;
        } else if fam.accepts(Setting::Regression) {
            spec.linear.loss = l.linear().with_context(|| {
                format!(
                    "--loss {} is not a loss of --model {family}: use logistic or squared-hinge",
                    l.name()
                )
            })?;
        } else {
            bail!(
                "--loss applies to --model {} or {}",
                families::accepting(Setting::BagLoss),
                families::accepting(Setting::Regression)
            );
        }
    }
    spec.cnn.filters = args.filters.unwrap_or(spec.cnn.filters);
    if let Some(k) = &args.kernel_sizes {
        spec.cnn.kernel_sizes = k.clone();
    }
    if args.mask || args.no_mask {
        spec.mask = args.mask;
    }
    spec.linear.c = args.c.unwrap_or(spec.linear.c);
    spec.linear.max_iter = args.max_iter.unwrap_or(spec.linear.max_iter);
    spec.linear.balanced = args.balanced;
    spec.linear.min_df = args.min_df.unwrap_or(spec.linear.min_df);
    spec.bag.word_ngrams = args.word_ngrams.unwrap_or(spec.bag.word_ngrams);
    spec.bag.buckets = args.buckets.unwrap_or(spec.bag.buckets);
    spec.bag.minn = args.minn.unwrap_or(spec.bag.minn);
    spec.bag.maxn = args.maxn.unwrap_or(spec.bag.maxn);
    if let Some(d) = args.dim {
        spec.embed_dim = d;
    }
    if let Some(t) = args.tokenizer {
        spec.tokenizer.segmentation = t.into();
        spec.detect_cjk = false;
    }
    if args.fold_digits {
        if spec.tokenizer.segmentation == Segmentation::Keras {
            bail!(
                "--fold-digits needs --tokenizer word, char, cjk or jieba (the keras tokenizer \
                 keeps Keras's rules)"
            );
        }
        spec.tokenizer.fold_digits = true;
    }
    if let Some(n) = args.num_words {
        spec.tokenizer.num_words = Some(n);
    }
    spec.tokenizer.char_level = args.char_level;
    spec.tokenizer.oov_token = args.oov_token.clone();
    spec.tokenizer.lower = !args.no_lower;
    spec.max_len = args.max_len.unwrap_or(spec.max_len);
    spec.embed_dim = args.embed_dim.unwrap_or(spec.embed_dim);
    spec.hidden = args.hidden.unwrap_or(spec.hidden);
    spec.dropout = args.dropout.unwrap_or(spec.dropout);
    spec.recurrent_dropout = args.recurrent_dropout.unwrap_or(spec.recurrent_dropout);
    spec.padding = args.padding.map_or(spec.padding, Side::from);
    spec.truncating = args.truncating.map_or(spec.truncating, Side::from);
    cfg.epochs = args.epochs.unwrap_or(cfg.epochs);
    cfg.batch_size = args.batch_size.unwrap_or(cfg.batch_size);
    if let Some(o) = args.optimizer {
        cfg.optimizer = o.into();
    }
    cfg.lr = args.lr.or(cfg.lr);
    cfg.momentum = args.momentum.unwrap_or(0.0);
    cfg.validation_split = args.validation_split.unwrap_or(cfg.validation_split);
    cfg.seed = args.seed.seed;
    cfg.threads = args.threads.count();
    cfg.patience = args.patience;
    cfg.restore_best = !args.no_restore_best;
    families::validate(&spec)?;
    cfg.validate()?;
    Ok((spec, cfg))
}

pub fn cmd_train(args: &TrainArgs) -> Result<Artifact> {
    let (spec, cfg) = settings(args)?;
    if spec.encoder.is_some() {
        crate::keep_large_blocks();
    }
    let task = args.labels.task();
    let opts = args.data_args.options();
    let data = read_labelled(&args.data, &opts)?;
    let source = args.data.display().to_string();
    eprintln!(
        "Read {} rows from {} ({} threads, seed {})",
        data.records.len(),
        source,
        cfg.threads,
        cfg.seed
    );
    let started = Instant::now();
    let mut reporter = progress::TrainReporter::new();
    let mut board = match &args.tensorboard {
        Some(dir) => Some(
            tensorboard::TensorBoardWriter::create(dir)
                .with_context(|| format!("creating TensorBoard logs in {}", dir.display()))?,
        ),
        None => None,
    };
    let lr = cfg.optimizer_kind().learning_rate();
    let outcome = train(
        &data.records,
        &source,
        task,
        &args.labels.label_sep,
        &spec,
        &cfg,
        &mut |ev| {
            if let (Some(b), flywheel_model::TrainEvent::Epoch { record, .. }) = (&mut board, &ev) {
                b.epoch(record, lr);
            }
            reporter.on_event(ev)
        },
    )?;
    reporter.finish();
    if let Some(b) = board {
        match b.finish() {
            (_, Some(err)) => eprintln!("warning: TensorBoard logs incomplete: {err}"),
            (files, None) => eprintln!(
                "TensorBoard logs: {}",
                files
                    .iter()
                    .map(|f| f.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let file_name = args
        .data
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let artifact = Artifact::from_training(outcome, cfg, &file_name, &data.sha256);
    artifact
        .save(&args.output)
        .with_context(|| format!("saving the model to {}", args.output.display()))?;
    let epochs = artifact
        .meta
        .training
        .as_ref()
        .map_or(0, |t| t.history.len());
    eprintln!(
        "Trained {} epochs in {seconds:.1} s; model written to {}",
        epochs,
        args.output.display()
    );
    Ok(artifact)
}

/// A zero-shot model's flags (`flywheel zeroshot`, `flywheel models create`).
#[derive(Args, Debug)]
pub struct ZeroShotArgs {
    /// The labels, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    pub labels: Vec<String>,
    #[command(flatten)]
    pub encoder: EncoderArg,
    /// One-line label descriptions, a `LABEL: DESCRIPTION` per line.
    #[arg(long, value_name = "FILE")]
    pub descriptions: Option<PathBuf>,
    /// A sentence with {} where the label name goes (repeatable) [default: "This sentence is
    /// {}"].
    #[arg(long = "template", value_name = "TEXT")]
    pub templates: Vec<String>,
    #[command(flatten)]
    pub threads: ThreadsArg,
}

/// A zero-shot model of the flags' labels, with no training rows.
pub fn zero_shot_artifact(args: &ZeroShotArgs) -> Result<Artifact> {
    use flywheel_model::families::zeroshot;
    let Some(dir) = &args.encoder.encoder else {
        bail!("a zero-shot model needs --encoder DIR|NAME (a sentence encoder)");
    };
    let mut spec = ModelSpec::zeroshot(encoder_dir(dir)?);
    if let Some(z) = spec.zero_shot.as_mut() {
        if let Some(path) = &args.descriptions {
            z.descriptions = zeroshot::read_descriptions(path)?;
        }
        if !args.templates.is_empty() {
            z.templates = args.templates.clone();
        }
    }
    let threads = args.threads.count();
    let labels = zeroshot::zero_shot_labels(&args.labels)?;
    let pipeline = zeroshot::zero_shot_pipeline(&spec, labels, threads)?;
    let outcome = flywheel_model::TrainOutcome {
        pipeline,
        history: Vec::new(),
        best_epoch: None,
        stopped_early: false,
        train_rows: 0,
        val_rows: 0,
        validation: None,
        class_counts: Vec::new(),
        solver_evaluations: None,
        drift: None,
    };
    let config = TrainConfig {
        threads,
        ..families::of(Family::ZeroShot).default_config()
    };
    Ok(Artifact::from_training(outcome, config, "", ""))
}

/// `flywheel zeroshot`: writes a zero-shot model file.
pub fn cmd_zeroshot(args: &ZeroShotArgs, output: &Path) -> Result<()> {
    let artifact = zero_shot_artifact(args)?;
    artifact.save(output)?;
    eprintln!(
        "Zero-shot model over {} written to {}",
        artifact.pipeline.labels.labels.join(", "),
        output.display()
    );
    Ok(())
}
