//! ROS 2 topic name resolution: `~/x`, relative and absolute names, then remapping.

use anyhow::{Result, bail};

/// Resolves `name` for the node `/ns/node` and applies `remaps` (first match wins). A remap
/// rule matches the name as written or as resolved; its target is resolved the same way.
pub fn resolve(
    name: &str,
    namespace: &str,
    node: &str,
    remaps: &[(String, String)],
) -> Result<String> {
    let resolved = expand(name, namespace, node)?;
    for (from, to) in remaps {
        if from == name || expand(from, namespace, node).is_ok_and(|f| f == resolved) {
            return expand(to, namespace, node);
        }
    }
    Ok(resolved)
}

/// Expands `~` and relative names to an absolute name; checks the name is well formed.
pub fn expand(name: &str, namespace: &str, node: &str) -> Result<String> {
    let ns = namespace.trim_end_matches('/');
    let full = if let Some(rest) = name.strip_prefix("~/") {
        format!("{ns}/{node}/{rest}")
    } else if name == "~" {
        format!("{ns}/{node}")
    } else if name.starts_with('/') {
        name.to_string()
    } else {
        format!("{ns}/{name}")
    };
    let ok_token = |t: &str| {
        !t.is_empty()
            && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !t.starts_with(|c: char| c.is_ascii_digit())
            && !t.contains("__")
    };
    if !full[1..].split('/').all(ok_token) {
        bail!("{name:?} (resolved {full:?}) is not a valid ROS 2 topic name");
    }
    Ok(full)
}

/// Normalises a namespace from `-r __ns:=` to `/a/b` form (`/` for the root).
pub fn normalise_namespace(ns: &str) -> Result<String> {
    let trimmed = ns.trim_matches('/');
    if trimmed.is_empty() {
        return Ok("/".to_string());
    }
    expand(&format!("/{trimmed}"), "/", "n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_like_rcl() {
        let r = vec![("/camera/image_raw".to_string(), "/cam2/image".to_string())];
        assert_eq!(
            resolve("~/detections", "/robot", "sorter", &r).unwrap(),
            "/robot/sorter/detections"
        );
        assert_eq!(resolve("~/detections", "/", "sorter", &[]).unwrap(), "/sorter/detections");
        assert_eq!(resolve("image", "/robot", "sorter", &[]).unwrap(), "/robot/image");
        assert_eq!(resolve("/camera/image_raw", "/", "s", &r).unwrap(), "/cam2/image");
        let r = vec![("~/sort_commands".to_string(), "/bins/cmd".to_string())];
        assert_eq!(resolve("~/sort_commands", "/", "s", &r).unwrap(), "/bins/cmd");
        assert!(resolve("/bad name", "/", "s", &[]).is_err());
        assert_eq!(normalise_namespace("robot/").unwrap(), "/robot");
        assert_eq!(normalise_namespace("/").unwrap(), "/");
    }
}
