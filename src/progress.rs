//! Progress of long runs (training, batch runs, loading, synthesis) as bars on stderr: the
//! one place they are drawn. Library code is handed a [`Bar`] and counts its work on it;
//! a bar asked not to show, or on a stderr that is not a terminal, draws nothing.

/// A stage's progress: `inc` as work is done, `set_length` when the total becomes known,
/// `finish_and_clear` at the end.
pub type Bar = indicatif::ProgressBar;

/// A bar for `len` units of the stage `what`, drawn on stderr when `show` (indicatif also
/// hides it when stderr is not a terminal, so redirected runs stay quiet).
pub fn bar(len: u64, what: &str, show: bool) -> Bar {
    if !show {
        return Bar::hidden();
    }
    let pb = Bar::with_draw_target(Some(len), indicatif::ProgressDrawTarget::stderr_with_hz(4));
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg:>10} [{bar:40}] {human_pos}/{human_len} ({per_sec}, eta {eta})",
    ) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(what.to_string());
    pb
}
