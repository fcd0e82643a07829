//! The launch file is valid Python that defines `generate_launch_description` (ROS 2 itself
//! is not installed here, so it is parsed, not run).

#[test]
fn launch_file_parses_and_starts_both_nodes_with_a_backend_argument() {
    let root = env!("CARGO_MANIFEST_DIR");
    let script = r#"
import ast, sys
tree = ast.parse(open(sys.argv[1]).read())
funcs = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
execs = sorted(k.value.value for k in ast.walk(tree)
               if isinstance(k, ast.keyword) and k.arg == "executable")
declared = [c.args[0].value for c in ast.walk(tree) if isinstance(c, ast.Call)
            and getattr(c.func, "id", "") == "DeclareLaunchArgument"]
env = [ast.unparse(k.value) for k in ast.walk(tree)
       if isinstance(k, ast.keyword) and k.arg == "additional_env"]
print(funcs, execs, declared, env)
"#;
    let out = std::process::Command::new(format!("{root}/.venv/bin/python"))
        .args(["-c", script, &format!("{root}/launch/coin_sorter.launch.py")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "['generate_launch_description'] ['coin_sorter_actuator', 'coin_sorter_node'] \
         ['params_file', 'model_path', 'backend'] [\"{'COIN_SORTER_BACKEND': backend}\"]"
    );
}
