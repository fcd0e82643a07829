//! The shipped config, the nodes' `--help` and the code's defaults agree.

use coin_sorter::nodes::{actuator, sorter};
use coin_sorter::params::{ParamSet, RosArgs};

const NODE: &str = env!("CARGO_BIN_EXE_coin_sorter_node");
const ACTUATOR: &str = env!("CARGO_BIN_EXE_coin_sorter_actuator");
const CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/coin_sorter.yaml");

fn stdout(exe: &str, arg: &str) -> String {
    let out = std::process::Command::new(exe).arg(arg).output().unwrap();
    assert!(out.status.success(), "{exe} {arg} failed");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn config_file_is_exactly_the_dumped_defaults_of_both_nodes() {
    let text = std::fs::read_to_string(CONFIG).unwrap();
    let body: String =
        text.lines().skip_while(|l| l.starts_with('#')).map(|l| format!("{l}\n")).collect();
    assert_eq!(body, stdout(NODE, "--dump-params") + &stdout(ACTUATOR, "--dump-params"));
}

#[test]
fn config_file_resolves_to_the_defaults_for_each_node() {
    let args =
        RosArgs::parse(["--ros-args".to_string(), "--params-file".into(), CONFIG.into()]).unwrap();
    assert_eq!(
        args.resolve_params(sorter::PARAMS, "/coin_sorter").unwrap(),
        ParamSet::defaults(sorter::PARAMS)
    );
    assert_eq!(
        args.resolve_params(actuator::PARAMS, "/coin_sorter_actuator").unwrap(),
        ParamSet::defaults(actuator::PARAMS)
    );
}

#[test]
fn help_lists_every_parameter_with_its_default() {
    let help = stdout(NODE, "--help");
    let defaults = ParamSet::defaults(sorter::PARAMS);
    for (name, value) in defaults.iter() {
        let line = format!("  {name} ({}, default {value};", value.type_name());
        assert!(help.contains(&line), "--help lacks {line:?}:\n{help}");
    }
    assert_eq!(help.matches(", default ").count(), sorter::PARAMS.len());
    let help = stdout(ACTUATOR, "--help");
    assert!(
        help.contains("  command_topic (string, default \"/coin_sorter/sort_commands\";"),
        "{help}"
    );
}

#[test]
fn a_wrong_parameter_stops_start_up_with_its_name() {
    let out = std::process::Command::new(NODE)
        .args(["--ros-args", "-p", "confidence_threshold:=high"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("\"confidence_threshold\" expects double"), "{err}");
    let out = std::process::Command::new(NODE)
        .args(["--ros-args", "-p", "device:=tpu"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"tpu\""));
    for (param, want) in [
        ("precision:=half", "precision \"half\" is not one of auto, fp32, fp16"),
        ("memory_format:=on", "memory_format \"on\" is not one of auto, channels_last, contiguous"),
    ] {
        let out =
            std::process::Command::new(NODE).args(["--ros-args", "-p", param]).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{param}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{param}: {err}");
    }
}
