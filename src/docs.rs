//! `dm-ulogd generate-docs DIR` (hidden): the man pages and shell completions the Debian
//! package installs, generated from the command line's own definition (clap_mangen,
//! clap_complete), so that they cannot drift from what the binary takes.
//!
//! DIR/man8: dm-ulogd.8 and one page per command (dm-ulogd-status.8, …);
//! DIR/completions: dm-ulogd.bash, _dm-ulogd (zsh), dm-ulogd.fish.

use std::path::Path;

use clap::CommandFactory;
use clap_complete::Shell;

/// An I/O error, said with the path it concerns.
fn io(path: &Path) -> impl Fn(std::io::Error) -> String + '_ {
    move |error| format!("{}: {error}", path.display())
}

pub fn generate<C: CommandFactory>(dir: &Path) -> Result<(), String> {
    let man = dir.join("man8");
    std::fs::create_dir_all(&man).map_err(io(&man))?;
    let command = C::command().name("dm-ulogd");
    let page = |command: clap::Command, name: &str| -> Result<(), String> {
        let path = man.join(format!("{name}.8"));
        let mut out = Vec::new();
        clap_mangen::Man::new(command.name(name.to_owned()))
            .section("8")
            .render(&mut out)
            .map_err(io(&path))?;
        std::fs::write(&path, out).map_err(io(&path))
    };
    page(command.clone(), "dm-ulogd")?;
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        page(sub.clone(), &format!("dm-ulogd-{}", sub.get_name()))?;
    }
    let completions = dir.join("completions");
    std::fs::create_dir_all(&completions).map_err(io(&completions))?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let mut command = command.clone();
        clap_complete::generate_to(shell, &mut command, "dm-ulogd", &completions)
            .map_err(io(&completions))?;
    }
    Ok(())
}
