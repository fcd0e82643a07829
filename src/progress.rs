//! Progress bars for work over crops that takes more than a few seconds.

use indicatif::{ProgressBar, ProgressStyle};

/// A bar over `len` crops, labelled `what`. Falls back to indicatif's default look if the
/// template were ever invalid, since a progress bar is never worth failing a run for.
pub fn crops_bar(len: usize, what: &str) -> ProgressBar {
    bar(len, "crops", what)
}

/// A bar over `len` things counted in `unit` (crops, frames), labelled `what`; same fallback.
pub fn bar(len: usize, unit: &str, what: &str) -> ProgressBar {
    let template = format!("{{msg}} [{{elapsed_precise}}] {{bar:30}} {{pos}}/{{len}} {unit}");
    let style =
        ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar());
    ProgressBar::new(len as u64).with_style(style).with_message(what.to_string())
}
