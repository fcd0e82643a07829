//! Monitor: how unlike the training data each coin looks, and whether the camera stream as a
//! whole has drifted away from it.
//!
//! A model fine-tuned on phone photos can sort at chance on the robot's camera without any
//! error showing. Training stores statistics of its penultimate features in the model's
//! metadata ([`stats::MonitorStats`]); the node scores every coin against them
//! ([`score::ShiftScorer`]), rejects coins above the threshold, and keeps a rolling state over
//! the last coins ([`stream::StreamMonitor`]) that it reports on `/diagnostics`.

pub mod check;
pub mod fit;
pub mod refit;
pub mod score;
pub mod stats;
pub mod stream;
pub mod study;

/// `coin_sorter monitor` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum MonitorCommand {
    /// Fit a model's monitor statistics on the set it was trained on, and rewrite the model and
    /// its metadata in place so it returns features (for models trained before the monitor
    /// existed).
    Fit(refit::FitArgs),
    /// Measure how well the monitor tells in-domain crops from shifted ones, per coin and
    /// over a stream whose input switches.
    Study(study::StudyArgs),
}

/// Runs a `monitor` subcommand and prints where its results went.
pub fn run(command: &MonitorCommand) -> anyhow::Result<()> {
    match command {
        MonitorCommand::Fit(args) => {
            let meta = refit::run(args)?;
            let m = meta.monitor.as_ref();
            println!(
                "model {} now carries shift monitor statistics ({} training crops, {} \
                 validation crops, {} components)",
                args.model.display(),
                m.map_or(0, |m| m.train_count),
                m.map_or(0, |m| m.validation.count),
                m.map_or(0, |m| m.components.len())
            );
        }
        MonitorCommand::Study(args) => {
            let r = study::run(args)?;
            print!("{}", study::to_markdown(&r));
            println!(
                "\nreport {}, {} and {}",
                r.markdown.display(),
                r.json.display(),
                r.roc_png.display()
            );
        }
    }
    Ok(())
}
