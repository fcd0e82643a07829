//! The coin_sorter command line: data sets, training, audits, bag inspection and the demo.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use coin_sorter::audit::{self, AuditArgs};
use coin_sorter::bag::{BagInfoArgs, run_info};
use coin_sorter::bench::{self, BenchCommand};
use coin_sorter::dataset::{self, DatasetCommand};
use coin_sorter::demo::{self, DemoArgs};
use coin_sorter::eval::{self, EvalArgs};
use coin_sorter::monitor::{self, MonitorCommand};
use coin_sorter::nodes::init_logging;
use coin_sorter::train::{self, TrainArgs};

/// Coin sorter tools: make crop sets, train and audit the classifier, inspect recordings, run
/// the live demo.
#[derive(Debug, Parser)]
#[command(name = "coin_sorter", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Make class-per-folder coin crop sets from annotations, bags or a live camera.
    Dataset {
        #[command(subcommand)]
        command: DatasetCommand,
    },
    /// Audit a model's test score: leakage, exact interval, negative controls, curves.
    Audit(AuditArgs),
    /// Replay a bag, a LabelMe photo set or a crop set through the node's pipeline, offline,
    /// and report accuracy with intervals and per-stage latency.
    Eval(EvalArgs),
    /// Train the ResNet-50 coin classifier on a class-per-folder image set and export it.
    Train(TrainArgs),
    /// The domain-shift monitor: fit its statistics into a model, or measure it.
    Monitor {
        #[command(subcommand)]
        command: MonitorCommand,
    },
    /// Speed and memory benchmarks (docs/performance.md).
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// Inspect rosbag2 recordings.
    Bag {
        #[command(subcommand)]
        command: BagCommand,
    },
    /// Run the live ROS 2 demo on the shared data (inside scripts/netns.sh).
    Demo {
        #[command(flatten)]
        demo: DemoArgs,
        /// Epochs of the training run made when the model does not exist yet.
        #[arg(long, default_value_t = 6)]
        train_epochs: usize,
        /// Input size of that training run.
        #[arg(long, default_value_t = 96)]
        train_input_size: u32,
    },
}

#[derive(Debug, Subcommand)]
enum BagCommand {
    /// Print topics, types and message counts of a bag.
    Info(BagInfoArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(None);
    let result = match cli.command {
        Command::Dataset { command } => dataset::run(&command),
        Command::Audit(args) => audit::run(&args).map(|r| {
            for c in &r.checks {
                println!("{:<18} {}  {}", c.name, c.verdict, c.why);
            }
            println!(
                "overall: {}; report {} and {}",
                r.overall,
                audit::report::markdown_path(&args.out).display(),
                audit::report::json_path(&args.out).display()
            );
        }),
        Command::Eval(args) => eval::run(&args).and_then(|r| {
            print!("{}", eval::report::to_markdown(&r));
            match r.input_error {
                Some(e) => {
                    Err(anyhow::anyhow!("input ended early: {e}; report {}", r.report_md.display()))
                }
                None => Ok(()),
            }
        }),
        Command::Train(args) => train::run(&args).map(|r| {
            println!(
                "model {} (best validation accuracy {:.1}% at epoch {}), curves {}",
                r.model.display(),
                r.best_val_accuracy * 100.0,
                r.best_epoch,
                r.curves_csv.display()
            );
        }),
        Command::Monitor { command } => monitor::run(&command),
        Command::Bench { command } => bench::run(&command),
        Command::Bag { command: BagCommand::Info(args) } => run_info(&args),
        Command::Demo { demo, train_epochs, train_input_size } => {
            ensure_model(&demo, train_epochs, train_input_size).and_then(|()| demo::run(&demo))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("coin_sorter: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Trains the demo model on `coins-mobile` when it does not exist yet.
fn ensure_model(demo: &DemoArgs, epochs: usize, input_size: u32) -> anyhow::Result<()> {
    if demo.model.exists() {
        println!("using model {}", demo.model.display());
        return Ok(());
    }
    let data: PathBuf = demo.data.join("coins-mobile");
    println!(
        "no model at {}: training ResNet-50 on {} ({epochs} epochs, {input_size}px); \
         this takes several minutes on a CPU",
        demo.model.display(),
        data.display()
    );
    let mut args = TrainArgs::new(data);
    args.out = demo.model.clone();
    args.epochs = epochs;
    args.input_size = input_size;
    let report = train::run(&args)?;
    println!(
        "trained in {:.0} s: best validation accuracy {:.1}% (epoch {})",
        report.total_seconds,
        report.best_val_accuracy * 100.0,
        report.best_epoch
    );
    Ok(())
}
