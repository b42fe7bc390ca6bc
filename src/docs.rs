//! `promptbatch completions SHELL` and `promptbatch man`: both generated from
//! the clap definition in `cli`, so they never drift from the flags.

use std::io::{self, Write};

use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::{Cli, MOCK_EXAMPLE};

/// The command line as clap builds it, plus what the flag definitions cannot
/// know without importing a later stage: the mock's own list of directives
/// and faults in `mock-server --help` (generated from its table, so it
/// never drifts). The binary parses with it; completions and the man page
/// are made from it.
pub fn command() -> clap::Command {
    Cli::command().mut_subcommand("mock-server", |mock| {
        mock.after_long_help(format!(
            "{MOCK_EXAMPLE}\n\n{}",
            crate::mock::directives_help()
        ))
    })
}

/// Writes the completion script for `shell` to `out`.
pub fn completions(shell: Shell, out: &mut impl Write) -> io::Result<()> {
    let mut command = command();
    // Into a buffer first: `generate` panics on a write error (a closed
    // pipe), and a failed write should be an error message, not a panic.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "promptbatch", &mut script);
    out.write_all(&script)?;
    out.flush()
}

/// Writes the man page (roff, section 1) to `out`: the top-level page, then
/// one section per subcommand with its synopsis and every flag, so
/// `man promptbatch` alone documents the whole command line.
pub fn man(out: &mut impl Write) -> io::Result<()> {
    let command = command();
    let mut top = Vec::new();
    clap_mangen::Man::new(command.clone()).render(&mut top)?;
    let top = String::from_utf8_lossy(&top);
    // clap_mangen defines the quote string before the title; the title goes
    // first so tools that read only a page's head (whatis, mandb) find it.
    let mut page = Vec::new();
    let (title, rest): (Vec<&str>, Vec<&str>) = top.lines().partition(|l| l.starts_with(".TH "));
    for line in title.iter().chain(&rest) {
        writeln!(page, "{line}")?;
    }
    for sub in command.get_subcommands() {
        let name = format!("promptbatch {}", sub.get_name());
        let man = clap_mangen::Man::new(sub.clone().bin_name(&name).display_name(&name));
        let mut part = Vec::new();
        man.render_synopsis_section(&mut part)?;
        man.render_description_section(&mut part)?;
        man.render_options_section(&mut part)?;
        writeln!(page, ".SH \"{}\"", name.to_uppercase())?;
        // clap_mangen writes each part as a top-level section (.SH); inside a
        // subcommand's section they are subsections.
        let part = String::from_utf8_lossy(&part);
        // Each part repeats the quote-string definition the page already has.
        let part = part
            .lines()
            .filter(|l| !l.starts_with(".ie ") && !l.starts_with(".el "));
        for line in part {
            match line.strip_prefix(".SH ") {
                Some(heading) => writeln!(page, ".SS {heading}")?,
                None => writeln!(page, "{line}")?,
            }
        }
    }
    out.write_all(&page)?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The subcommands as the flag definitions declare them.
    fn subcommands() -> Vec<String> {
        Cli::command()
            .get_subcommands()
            .map(|c| c.get_name().to_string())
            .collect()
    }

    fn script(shell: Shell) -> String {
        let mut out = Vec::new();
        completions(shell, &mut out).expect("written");
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn every_shell_names_every_subcommand() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish, Shell::PowerShell] {
            let text = script(shell);
            for sub in subcommands() {
                assert!(text.contains(&sub), "{shell}: no {sub}");
            }
        }
    }

    #[test]
    fn man_page_is_roff_and_names_every_subcommand() {
        let mut out = Vec::new();
        man(&mut out).expect("written");
        let text = String::from_utf8(out).expect("utf-8");
        assert!(text.starts_with(".TH"), "{}", &text[..40.min(text.len())]);
        for sub in subcommands() {
            let heading = format!(".SH \"PROMPTBATCH {}\"", sub.to_uppercase());
            assert!(text.contains(&heading), "no {sub}");
        }
        // The subcommands' flags are in the page, not only their names.
        assert!(text.contains("max\\-cost"), "no --max-cost");
    }
}
