//! Models the classifier refuses at load, each with one reason that names the file: outputs
//! it cannot score, and files that are not what a model or its metadata must be.

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
