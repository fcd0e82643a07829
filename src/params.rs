//! ROS 2 style parameters: typed defaults, `ros__parameters` YAML files and `--ros-args`.
//!
//! Each node declares its parameters once, as a table of [`ParamSpec`]; that table is the only
//! place a default lives. `--help` prints it and `config/*.yaml` is checked against it by a
//! test, so documentation, shipped config and code cannot drift apart.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// A parameter value, with the types ROS 2 parameters have that this package uses.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamValue {
    Bool(bool),
    Integer(i64),
    Double(f64),
    String(String),
    StringArray(Vec<String>),
}

impl ParamValue {
    /// The ROS 2 type name of the value, for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Bool(_) => "bool",
            Self::Integer(_) => "integer",
            Self::Double(_) => "double",
            Self::String(_) => "string",
            Self::StringArray(_) => "string_array",
        }
    }

    /// Converts a YAML value to a value of the same type as `like`, or explains the mismatch.
    /// Integers are accepted where doubles are expected, as ROS 2 does for files.
    fn from_yaml_like(v: &serde_yaml::Value, like: &ParamValue) -> Result<Self, String> {
        use serde_yaml::Value as Y;
        let got = || serde_yaml::to_string(v).unwrap_or_default().trim().to_string();
        Ok(match (like, v) {
            (Self::Bool(_), Y::Bool(b)) => Self::Bool(*b),
            (Self::Integer(_), Y::Number(n)) if n.is_i64() => {
                Self::Integer(n.as_i64().ok_or_else(got)?)
            }
            (Self::Double(_), Y::Number(n)) => Self::Double(n.as_f64().ok_or_else(got)?),
            (Self::String(_), Y::String(s)) => Self::String(s.clone()),
            (Self::StringArray(_), Y::Sequence(items)) => Self::StringArray(
                items
                    .iter()
                    .map(|i| i.as_str().map(str::to_string).ok_or_else(got))
                    .collect::<Result<_, _>>()?,
            ),
            _ => return Err(format!("expects {}, got {}", like.type_name(), got())),
        })
    }

    fn to_yaml(&self) -> String {
        match self {
            Self::Bool(b) => b.to_string(),
            Self::Integer(i) => i.to_string(),
            Self::Double(d) if d.fract() == 0.0 && d.abs() < 1e15 => format!("{d:.1}"),
            Self::Double(d) => d.to_string(),
            Self::String(s) => format!("{s:?}"),
            Self::StringArray(a) => {
                let items: Vec<String> = a.iter().map(|s| format!("{s:?}")).collect();
                format!("[{}]", items.join(", "))
            }
        }
    }
}

impl fmt::Display for ParamValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_yaml())
    }
}

/// A default value that can live in a `const` table.
#[derive(Debug, Clone, Copy)]
pub enum Default {
    Bool(bool),
    Integer(i64),
    Double(f64),
    Str(&'static str),
    StrArray(&'static [&'static str]),
}

impl Default {
    fn value(self) -> ParamValue {
        match self {
            Self::Bool(b) => ParamValue::Bool(b),
            Self::Integer(i) => ParamValue::Integer(i),
            Self::Double(d) => ParamValue::Double(d),
            Self::Str(s) => ParamValue::String(s.to_string()),
            Self::StrArray(a) => ParamValue::StringArray(a.iter().map(|s| s.to_string()).collect()),
        }
    }
}

/// One declared parameter: name, default (which also fixes its type) and what it does.
#[derive(Debug, Clone, Copy)]
pub struct ParamSpec {
    pub name: &'static str,
    pub default: Default,
    pub help: &'static str,
    /// Whether a change at run time takes effect without restarting the node.
    pub dynamic: bool,
}

/// The resolved parameters of one node. Invariant: holds exactly the declared names, each
/// with a value of its declared type.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamSet {
    values: BTreeMap<String, ParamValue>,
}

impl ParamSet {
    /// All parameters at their defaults.
    pub fn defaults(specs: &[ParamSpec]) -> Self {
        Self { values: specs.iter().map(|s| (s.name.to_string(), s.default.value())).collect() }
    }

    /// Sets `name` from a YAML value, converting to the declared type.
    pub fn set_yaml(&mut self, name: &str, v: &serde_yaml::Value) -> Result<()> {
        let Some(current) = self.values.get(name) else {
            bail!("unknown parameter {name:?}");
        };
        let new = ParamValue::from_yaml_like(v, current)
            .map_err(|e| anyhow::anyhow!("parameter {name:?} {e}"))?;
        self.values.insert(name.to_string(), new);
        Ok(())
    }

    /// Sets `name` to `value`, which must have the declared type.
    pub fn set_value(&mut self, name: &str, value: ParamValue) -> Result<()> {
        let Some(current) = self.values.get(name) else {
            bail!("unknown parameter {name:?}");
        };
        if std::mem::discriminant(current) != std::mem::discriminant(&value) {
            bail!("parameter {name:?} expects {}, got {}", current.type_name(), value.type_name());
        }
        self.values.insert(name.to_string(), value);
        Ok(())
    }

    /// The value of a declared parameter.
    pub fn get(&self, name: &str) -> Option<&ParamValue> {
        self.values.get(name)
    }

    /// All parameters in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &ParamValue)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// A string parameter; panics only if the node's own table declares another type.
    pub fn string(&self, name: &str) -> String {
        match self.values.get(name) {
            Some(ParamValue::String(s)) => s.clone(),
            other => panic!("parameter {name} is declared as string but holds {other:?}"),
        }
    }

    /// A double parameter (see [`ParamSet::string`] for the panic contract).
    pub fn double(&self, name: &str) -> f64 {
        match self.values.get(name) {
            Some(ParamValue::Double(d)) => *d,
            other => panic!("parameter {name} is declared as double but holds {other:?}"),
        }
    }

    /// An integer parameter (see [`ParamSet::string`] for the panic contract).
    pub fn integer(&self, name: &str) -> i64 {
        match self.values.get(name) {
            Some(ParamValue::Integer(i)) => *i,
            other => panic!("parameter {name} is declared as integer but holds {other:?}"),
        }
    }

    /// A bool parameter (see [`ParamSet::string`] for the panic contract).
    pub fn boolean(&self, name: &str) -> bool {
        match self.values.get(name) {
            Some(ParamValue::Bool(b)) => *b,
            other => panic!("parameter {name} is declared as bool but holds {other:?}"),
        }
    }

    /// A string-array parameter (see [`ParamSet::string`] for the panic contract).
    pub fn strings(&self, name: &str) -> Vec<String> {
        match self.values.get(name) {
            Some(ParamValue::StringArray(a)) => a.clone(),
            other => panic!("parameter {name} is declared as string_array but holds {other:?}"),
        }
    }

    /// The parameters as a ROS 2 params file for node `node` (fully qualified name).
    pub fn to_params_yaml(&self, node: &str, specs: &[ParamSpec]) -> String {
        let mut out = format!("{node}:\n  ros__parameters:\n");
        for spec in specs {
            if let Some(v) = self.values.get(spec.name) {
                out.push_str(&format!("    # {}\n    {}: {}\n", spec.help, spec.name, v));
            }
        }
        out
    }
}

/// What `--ros-args` said, as in rcl: node name and namespace overrides, topic remappings,
/// parameter files and single parameters, in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RosArgs {
    pub node_name: Option<String>,
    pub namespace: Option<String>,
    /// `from:=to` remappings of topic names, applied in order, first match wins.
    pub remaps: Vec<(String, String)>,
    pub params_files: Vec<PathBuf>,
    /// `-p name:=value`, value as written (parsed as YAML, as ROS 2 does).
    pub params: Vec<(String, String)>,
    pub log_level: Option<String>,
    /// Arguments outside `--ros-args ... [--]` sections.
    pub other: Vec<String>,
}

impl RosArgs {
    /// Parses a command line (without the program name).
    pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Self> {
        let mut out = Self::default();
        let mut it = args.into_iter();
        let mut in_ros = false;
        while let Some(a) = it.next() {
            if !in_ros {
                if a == "--ros-args" {
                    in_ros = true;
                } else {
                    out.other.push(a);
                }
                continue;
            }
            let mut value =
                |flag: &str| it.next().with_context(|| format!("--ros-args: {flag} needs a value"));
            match a.as_str() {
                "--" => in_ros = false,
                "--ros-args" => {}
                "-p" | "--param" => {
                    let v = value(&a)?;
                    let (k, val) = v
                        .split_once(":=")
                        .with_context(|| format!("--ros-args -p {v:?}: expected name:=value"))?;
                    out.params.push((k.to_string(), val.to_string()));
                }
                "-r" | "--remap" => {
                    let v = value(&a)?;
                    let (from, to) = v
                        .split_once(":=")
                        .with_context(|| format!("--ros-args -r {v:?}: expected from:=to"))?;
                    let from = from.rsplit_once(':').map_or(from, |(_, f)| f);
                    let name = |n: &str| {
                        crate::transport::names::expand(n, "/", "node")
                            .with_context(|| format!("--ros-args -r {v:?}"))
                    };
                    match from {
                        "__node" | "__name" => {
                            name(&format!("/{to}"))?;
                            anyhow::ensure!(
                                !to.contains('/'),
                                "--ros-args -r {v:?}: a node name has no /"
                            );
                            out.node_name = Some(to.to_string())
                        }
                        "__ns" => {
                            anyhow::ensure!(
                                to.starts_with('/'),
                                "--ros-args -r {v:?}: a namespace must be absolute, as rcl requires"
                            );
                            out.namespace = Some(to.to_string())
                        }
                        _ => {
                            name(from)?;
                            name(to)?;
                            out.remaps.push((from.to_string(), to.to_string()))
                        }
                    }
                }
                "--params-file" => out.params_files.push(PathBuf::from(value(&a)?)),
                "--log-level" => {
                    let level = value(&a)?;
                    const LEVELS: [&str; 5] = ["debug", "info", "warn", "error", "fatal"];
                    if !LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
                        bail!("--log-level {level:?} is not one of {}", LEVELS.join(", "));
                    }
                    out.log_level = Some(level);
                }
                "--enable-rosout-logs"
                | "--disable-rosout-logs"
                | "--enable-stdout-logs"
                | "--disable-stdout-logs"
                | "--enable-external-lib-logs"
                | "--disable-external-lib-logs" => {}
                other => bail!("--ros-args: unsupported argument {other:?}"),
            }
        }
        Ok(out)
    }

    /// Resolves the node's parameters: defaults, then each params file in order, then `-p`.
    /// `fq_node` is the node's fully qualified name (`/ns/name`) used to pick file sections.
    pub fn resolve_params(&self, specs: &[ParamSpec], fq_node: &str) -> Result<ParamSet> {
        let mut set = ParamSet::defaults(specs);
        for file in &self.params_files {
            apply_params_file(&mut set, file, fq_node)?;
        }
        for (k, v) in &self.params {
            let y: serde_yaml::Value = serde_yaml::from_str(v)
                .with_context(|| format!("-p {k}:={v}: value is not valid YAML"))?;
            set.set_yaml(k, &y).with_context(|| format!("-p {k}:={v}"))?;
        }
        Ok(set)
    }
}

/// Applies the sections of a ROS 2 params file that match `fq_node` (`/**`, `/ns/name`,
/// `name`, or a `/ns:` → `name:` nesting), in file order. Unknown parameters are an error
/// naming the file, as a typo in a robot's config should not pass silently.
fn apply_params_file(set: &mut ParamSet, file: &Path, fq_node: &str) -> Result<()> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read params file {}", file.display()))?;
    let root: serde_yaml::Value = serde_yaml::from_str(&text)
        .with_context(|| format!("params file {} is not valid YAML", file.display()))?;
    let Some(map) = root.as_mapping() else {
        bail!("params file {} does not hold a mapping of node names", file.display());
    };
    let base = fq_node.rsplit('/').next().unwrap_or(fq_node);
    let mut sections = Vec::new();
    collect_sections(map, "", &mut sections);
    for (key, params) in sections {
        let key_norm = if key.starts_with('/') { key.clone() } else { format!("/{key}") };
        let matches = key == "/**" || key == "**" || key_norm == fq_node || key == base;
        if !matches {
            continue;
        }
        let mut flat = Vec::new();
        flatten("", params, &mut flat);
        for (name, v) in flat {
            set.set_yaml(&name, v).with_context(|| format!("params file {}", file.display()))?;
        }
    }
    Ok(())
}

/// Finds every `<path>: ros__parameters:` block, joining nested keys into a node path.
fn collect_sections<'a>(
    map: &'a serde_yaml::Mapping,
    prefix: &str,
    out: &mut Vec<(String, &'a serde_yaml::Value)>,
) {
    for (k, v) in map {
        let Some(k) = k.as_str() else { continue };
        let path = if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{}/{}", prefix.trim_end_matches('/'), k.trim_start_matches('/'))
        };
        if let Some(inner) = v.as_mapping() {
            if let Some(params) = inner.get("ros__parameters") {
                out.push((path.clone(), params));
            }
            collect_sections(inner, &path, out);
        }
    }
}

/// Flattens nested parameter mappings into dotted names, as ROS 2 does.
fn flatten<'a>(
    prefix: &str,
    v: &'a serde_yaml::Value,
    out: &mut Vec<(String, &'a serde_yaml::Value)>,
) {
    match v.as_mapping() {
        Some(m) => {
            for (k, inner) in m {
                let Some(k) = k.as_str() else { continue };
                let name = if prefix.is_empty() { k.to_string() } else { format!("{prefix}.{k}") };
                flatten(&name, inner, out);
            }
        }
        None => out.push((prefix.to_string(), v)),
    }
}

/// The `--help` text: usage plus every parameter with its type, default and meaning.
pub fn help_text(program: &str, about: &str, specs: &[ParamSpec]) -> String {
    let mut s = format!(
        "{about}\n\nUsage: {program} [--help] [--ros-args [-p NAME:=VALUE] [--params-file FILE] \
         [-r __node:=NAME] [-r __ns:=/NS] [-r FROM:=TO] [--log-level LEVEL]]\n       {program} \
         --dump-params   (every default, in params-file form)\n\nParameters:\n"
    );
    for p in specs {
        let v = p.default.value();
        let when = if p.dynamic { "ros2 param set applies it live" } else { "restart to change" };
        s.push_str(&format!(
            "  {} ({}, default {}; {})\n      {}\n",
            p.name,
            v.type_name(),
            v,
            when,
            p.help
        ));
    }
    s
}

/// Longest duration any option or parameter may name: about 11.6 days. Bounds the waits a
/// typo such as `1e300` would otherwise turn into a panic or an endless wait.
pub const MAX_SECONDS: f64 = 1e6;
/// Most threads an option or parameter may ask libtorch for.
pub const MAX_THREADS: i64 = 1024;
/// Largest model input or crop side, in pixels: a typo such as `100000` would otherwise try to
/// allocate tens of gigabytes.
pub const MAX_IMAGE_SIDE: u32 = 4096;

/// `v` seconds as a [`Duration`] when `v` is finite and within `[min, MAX_SECONDS]`; otherwise
/// an error naming `name` and the value.
pub fn checked_seconds(name: &str, v: f64, min: f64) -> Result<std::time::Duration> {
    if !(v.is_finite() && (min..=MAX_SECONDS).contains(&v)) {
        bail!("{name} {v:?} must be a number of seconds in [{min}, {MAX_SECONDS}]");
    }
    Ok(std::time::Duration::from_secs_f64(v))
}

/// A libtorch thread count: 1 ..= [`MAX_THREADS`]; errors name `name` and the value.
pub fn checked_threads(name: &str, n: i64) -> Result<i32> {
    if !(1..=MAX_THREADS).contains(&n) {
        bail!("{name} {n} must be between 1 and {MAX_THREADS}");
    }
    Ok(n as i32)
}

/// An image side in pixels: 1 ..= [`MAX_IMAGE_SIDE`]; errors name `name` and the value.
pub fn checked_side(name: &str, n: u32) -> Result<u32> {
    if !(1..=MAX_IMAGE_SIDE).contains(&n) {
        bail!("{name} {n} must be between 1 and {MAX_IMAGE_SIDE} pixels");
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaps_are_checked_as_rcl_checks_them() {
        let parse = |r: &str| RosArgs::parse(["--ros-args", "-r", r].map(String::from));
        let e = format!("{:#}", parse("__ns:=relative").unwrap_err());
        assert!(e.contains("must be absolute"), "{e}");
        assert!(parse("a b:=c").is_err());
        assert!(parse("__node:=a/b").is_err());
        assert_eq!(parse("__ns:=/cell1").unwrap().namespace.as_deref(), Some("/cell1"));
        assert_eq!(parse("~/x:=/y").unwrap().remaps, vec![("~/x".into(), "/y".into())]);
    }

    #[test]
    fn limits_refuse_values_that_would_panic_or_hang() {
        assert!(checked_seconds("t", 1e300, 0.0).unwrap_err().to_string().starts_with("t 1e300"));
        assert!(checked_seconds("t", f64::NAN, 0.0).is_err());
        assert!(checked_seconds("t", 1e-300, 1e-3).is_err());
        assert_eq!(checked_seconds("t", 0.5, 1e-3).unwrap().as_millis(), 500);
        assert!(checked_threads("n", 0).is_err() && checked_threads("n", 100_000).is_err());
        assert_eq!(checked_threads("n", 4).unwrap(), 4);
        assert!(checked_side("s", 100_000).is_err() && checked_side("s", 0).is_err());
        let bad = RosArgs::parse(["--ros-args", "--log-level", "bogus"].map(String::from));
        assert!(bad.unwrap_err().to_string().contains("bogus"));
    }

    const SPECS: &[ParamSpec] = &[
        ParamSpec { name: "rate", default: Default::Double(2.0), help: "h", dynamic: true },
        ParamSpec { name: "depth", default: Default::Integer(1), help: "h", dynamic: false },
        ParamSpec { name: "topic", default: Default::Str("/img"), help: "h", dynamic: false },
        ParamSpec { name: "bins", default: Default::StrArray(&["a:b"]), help: "h", dynamic: true },
        ParamSpec { name: "on", default: Default::Bool(true), help: "h", dynamic: true },
    ];

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn ros_args_are_split_from_other_arguments() {
        let a = RosArgs::parse(args(
            "--x --ros-args -p rate:=3 -r __node:=n2 -r __ns:=/robot -r /img:=/cam \
             --params-file f.yaml --log-level debug -- --y",
        ))
        .unwrap();
        assert_eq!(a.node_name.as_deref(), Some("n2"));
        assert_eq!(a.namespace.as_deref(), Some("/robot"));
        assert_eq!(a.remaps, vec![("/img".to_string(), "/cam".to_string())]);
        assert_eq!(a.params, vec![("rate".to_string(), "3".to_string())]);
        assert_eq!(a.params_files, vec![PathBuf::from("f.yaml")]);
        assert_eq!(a.log_level.as_deref(), Some("debug"));
        assert_eq!(a.other, args("--x --y"));
    }

    #[test]
    fn files_then_command_line_override_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.yaml");
        std::fs::write(
            &f,
            "/**:\n  ros__parameters:\n    depth: 5\n/robot/sorter:\n  ros__parameters:\n    \
             rate: 7\n    bins: [\"x:y\", \"z:w\"]\nother:\n  ros__parameters:\n    depth: 9\n",
        )
        .unwrap();
        let a = RosArgs::parse(args(&format!(
            "--ros-args --params-file {} -p on:=false -p topic:=/c",
            f.display()
        )))
        .unwrap();
        let p = a.resolve_params(SPECS, "/robot/sorter").unwrap();
        assert_eq!(p.integer("depth"), 5);
        assert_eq!(p.double("rate"), 7.0);
        assert_eq!(p.strings("bins"), vec!["x:y".to_string(), "z:w".to_string()]);
        assert!(!p.boolean("on"));
        assert_eq!(p.string("topic"), "/c");
    }

    #[test]
    fn wrong_types_and_unknown_names_are_refused_with_the_name() {
        let e = RosArgs::parse(args("--ros-args -p depth:=abc"))
            .unwrap()
            .resolve_params(SPECS, "/n")
            .unwrap_err();
        assert!(format!("{e:#}").contains("\"depth\" expects integer"), "{e:#}");
        let e = RosArgs::parse(args("--ros-args -p nope:=1")).unwrap().resolve_params(SPECS, "/n");
        assert!(format!("{:#}", e.unwrap_err()).contains("unknown parameter \"nope\""));
    }
}
