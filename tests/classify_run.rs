//! How a loaded model runs: the staging buffer reused across batches of every size, the
//! channels-last layout, the graph optimisations, and the precision and layout choices on a
//! CPU-only machine.

mod common;

use coin_sorter::classify::device::{
    DevicePref, GraphOptimization, MemoryFormat, Precision, RunOptions,
};
use coin_sorter::classify::model::{Classifier, Prediction};

/// `n` crops of `side`² RGB with bytes from a fixed linear congruential sequence: unlike
/// constant crops, a crop read from the wrong place or layout changes the logits.
fn crops(n: usize, side: usize, seed: u32) -> Vec<u8> {
    let mut x = seed;
    (0..n * side * side * 3)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (x >> 24) as u8
        })
        .collect()
}

fn assert_close(a: &[Prediction], b: &[Prediction]) {
    assert_eq!(a.len(), b.len());
    for (p, q) in a.iter().zip(b) {
        assert_eq!(p.logits.len(), q.logits.len());
        for (x, y) in p.logits.iter().chain(&p.features).zip(q.logits.iter().chain(&q.features)) {
            assert!(
                (x - y).abs() <= 1e-4 * (1.0 + x.abs()),
                "{:?} against {:?}",
                p.logits,
                q.logits
            );
        }
    }
}

fn options(memory_format: MemoryFormat, precision: Precision) -> RunOptions {
    RunOptions { device: DevicePref::Cpu, precision, memory_format, graph: GraphOptimization::Auto }
}

#[test]
fn batches_of_any_size_and_layout_give_each_crop_its_own_scores() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::tiny_model(dir.path());
    let planar =
        Classifier::load_with(&model, options(MemoryFormat::Contiguous, Precision::Auto)).unwrap();
    let packed =
        Classifier::load_with(&model, options(MemoryFormat::ChannelsLast, Precision::Auto))
            .unwrap();
    let passes = "graph frozen with inference passes";
    assert_eq!(planar.run_mode(), format!("on Cpu, fp32, contiguous (NCHW), {passes}"));
    assert_eq!(packed.run_mode(), format!("on Cpu, fp32, channels_last (NHWC), {passes}"));

    let side = planar.metadata().input_size as usize;
    let per = side * side * 3;
    let five = crops(5, side, 7);
    let alone: Vec<Prediction> =
        five.chunks_exact(per).map(|c| planar.classify_rgb(c).unwrap().remove(0)).collect();
    // Big batch first, then smaller ones into the same (larger) buffer, then a bigger one.
    let batch = planar.classify_rgb(&five).unwrap();
    assert_close(&batch, &alone);
    assert_close(&planar.classify_rgb(&five[per..3 * per]).unwrap(), &alone[1..3]);
    let eight: Vec<u8> = five.iter().chain(&five[..3 * per]).copied().collect();
    let again = planar.classify_rgb(&eight).unwrap();
    assert_close(&again[..5], &alone);
    assert_close(&again[5..], &alone[..3]);

    assert_close(&packed.classify_rgb(&five).unwrap(), &alone);
    assert_close(&packed.classify_rgb(&five[2 * per..]).unwrap(), &alone[2..]);
    // The crops differ, so equal scores above mean each crop was read where it lies.
    assert!(alone[0].logits != alone[1].logits);
}

#[test]
fn fp16_on_the_cpu_runs_in_fp32_and_gives_the_fp32_scores() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::tiny_model(dir.path());
    let half = Classifier::load_with(&model, options(MemoryFormat::Auto, Precision::Fp16)).unwrap();
    let full = Classifier::load_with(&model, options(MemoryFormat::Auto, Precision::Fp32)).unwrap();
    assert_eq!(
        half.run_mode(),
        "on Cpu, fp32, contiguous (NCHW), graph frozen with inference passes"
    );
    let side = half.metadata().input_size as usize;
    let four = crops(4, side, 11);
    assert_close(&half.classify_rgb(&four).unwrap(), &full.classify_rgb(&four).unwrap());
}

/// Freezing and the inference passes change how the graph computes, not what: every choice
/// gives the saved graph's scores, in both layouts, and says which graph it runs.
#[test]
fn every_graph_optimization_gives_the_saved_graphs_scores() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::tiny_model(dir.path());
    let load = |graph, memory_format| {
        let opts = RunOptions { graph, ..options(memory_format, Precision::Fp32) };
        Classifier::load_with(&model, opts).unwrap()
    };
    let saved = load(GraphOptimization::None, MemoryFormat::Contiguous);
    assert_eq!(saved.run_mode(), "on Cpu, fp32, contiguous (NCHW), graph as saved");
    let side = saved.metadata().input_size as usize;
    let six = crops(6, side, 5);
    let expected = saved.classify_rgb(&six).unwrap();
    for (graph, words) in [
        (GraphOptimization::Auto, "graph frozen with inference passes"),
        (GraphOptimization::Inference, "graph frozen with inference passes"),
        (GraphOptimization::Freeze, "graph frozen"),
    ] {
        for (format, layout) in [
            (MemoryFormat::Contiguous, "contiguous (NCHW)"),
            (MemoryFormat::ChannelsLast, "channels_last (NHWC)"),
        ] {
            let c = load(graph, format);
            assert_eq!(c.run_mode(), format!("on Cpu, fp32, {layout}, {words}"));
            assert_close(&c.classify_rgb(&six).unwrap(), &expected);
            assert_close(&c.classify_rgb(&six[..side * side * 3]).unwrap(), &expected[..1]);
        }
    }
}

/// A model that gives different outputs for the same batch (noise added in its graph) cannot
/// have an optimised graph checked against it, so it runs as saved.
#[test]
fn a_model_with_random_outputs_runs_as_saved() {
    let dir = tempfile::tempdir().unwrap();
    let tiny = common::tiny_model(dir.path());
    let model = common::traced_like(&tiny, "noisy", |x, width| {
        let x = x.flatten(1, -1).narrow(1, 0, width);
        &x + x.rand_like()
    });
    let c =
        Classifier::load_with(&model, options(MemoryFormat::Contiguous, Precision::Fp32)).unwrap();
    assert_eq!(c.run_mode(), "on Cpu, fp32, contiguous (NCHW), graph as saved");
    let side = c.metadata().input_size as usize;
    assert_eq!(c.classify_rgb(&crops(3, side, 9)).unwrap().len(), 3);
    let tiny =
        Classifier::load_with(&tiny, options(MemoryFormat::Contiguous, Precision::Fp32)).unwrap();
    assert_eq!(
        tiny.run_mode(),
        "on Cpu, fp32, contiguous (NCHW), graph frozen with inference passes"
    );
}
