//! Models the classifier refuses at load, each with one reason that names the file: outputs
//! it cannot score, and files that are not what a model or its metadata must be; and a batch
//! it refuses when the model's scores for it are not numbers.

mod common;

use std::path::Path;

use coin_sorter::classify::device::DevicePref;
use coin_sorter::classify::model::Classifier;

fn refusal(model: &Path) -> String {
    format!("{:#}", Classifier::load(model, DevicePref::Cpu).unwrap_err())
}

#[test]
fn outputs_the_classifier_cannot_score_are_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let tiny = common::tiny_model(dir.path());
    let scores = |x: &tch::Tensor, width| x.flatten(1, -1).narrow(1, 0, width);

    let nan = common::traced_like(&tiny, "nan", |x, w| scores(x, w) * f64::NAN);
    assert_eq!(
        refusal(&nan),
        format!(
            "model {} gives scores that are not finite numbers (NaN or infinite) for a 32x32 \
             test batch",
            nan.display()
        )
    );
    let one_row = common::traced_like(&tiny, "one_row", |x, w| scores(x, w).narrow(0, 0, 1));
    assert_eq!(
        refusal(&one_row),
        format!(
            "model {0} fails on a 32x32 input: model {0} gives 1 rows of scores for 2 crops",
            one_row.display()
        )
    );
    let ints = common::traced_like(&tiny, "ints", |x, w| scores(x, w).to_kind(tch::Kind::Int64));
    assert_eq!(
        refusal(&ints),
        format!(
            "model {0} fails on a 32x32 input: model {0} outputs Int64 values, not \
             floating-point scores",
            ints.display()
        )
    );
    let sparse = common::traced_like(&tiny, "sparse", |x, w| scores(x, w).to_sparse_sparse_dim(2));
    assert_eq!(
        refusal(&sparse),
        format!(
            "model {0} fails on a 32x32 input: model {0} outputs a sparse or oneDNN tensor, not \
             a dense one",
            sparse.display()
        )
    );
    // The same file with finite scores loads: the refusals above are the outputs' doing.
    let fine = common::traced_like(&tiny, "fine", scores);
    assert!(Classifier::load(&fine, DevicePref::Cpu).is_ok());
}

#[test]
fn a_model_or_metadata_that_is_not_a_regular_file_is_refused_without_reading_it() {
    let dir = tempfile::tempdir().unwrap();
    let tiny = common::tiny_model(dir.path());
    assert_eq!(refusal(Path::new("/dev/null")), "model file /dev/null is not a regular file");
    let missing = dir.path().join("missing.pt");
    assert_eq!(refusal(&missing), format!("model file {} does not exist", missing.display()));

    // A FIFO as the metadata: opening it would wait for a writer that never comes.
    let meta = coin_sorter::classify::metadata::ModelMetadata::path_for_model(&tiny);
    std::fs::remove_file(&meta).unwrap();
    let status = std::process::Command::new("mkfifo").arg(&meta).status().unwrap();
    assert!(status.success());
    assert_eq!(
        refusal(&tiny),
        format!("cannot read model metadata {}: it is not a regular file", meta.display())
    );
}

#[test]
fn a_batch_the_model_scores_nan_is_refused_and_the_next_is_scored() {
    let dir = tempfile::tempdir().unwrap();
    let tiny = common::tiny_model(dir.path());
    // NaN only for crops darker on average than the test batch at load: log of a negative.
    let model = common::traced_like(&tiny, "dark_nan", |x, w| {
        let shift = (x.mean_dim([1, 2, 3].as_slice(), true, tch::Kind::Float) + 1.5).log();
        x.flatten(1, -1).narrow(1, 0, w) + shift.flatten(1, -1)
    });
    let c = Classifier::load(&model, DevicePref::Cpu).unwrap();
    let side = c.metadata().input_size as usize;
    let black = vec![0u8; side * side * 3];
    let err = format!("{:#}", c.classify_rgb(&black).unwrap_err());
    assert_eq!(
        err,
        format!("model {} gives NaN or infinite scores for this batch", model.display())
    );
    let grey = vec![128u8; side * side * 3];
    let scored = c.classify_rgb(&grey).unwrap();
    assert_eq!(scored.len(), 1);
    assert!(scored[0].logits.iter().all(|l| l.is_finite()));
}
