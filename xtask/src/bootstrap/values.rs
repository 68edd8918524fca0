//! Where secret values come from: the environment variable of the same name, or else a prompt
//! that does not echo (only when a person is at the terminal) — never the command line, which
//! every user of the machine can read in the process list.

use std::io::{BufRead, IsTerminal, Write};

/// The variable's value, or what the person types when there is a terminal, or None.
pub fn from_env_or_prompt(name: &str, what: &str) -> anyhow::Result<Option<String>> {
    if let Some(value) = std::env::var(name).ok().filter(|v| !v.is_empty()) {
        return Ok(Some(value));
    }
    if !std::io::stdin().is_terminal() {
        return Ok(None);
    }
    let typed = hidden_prompt(&format!("{name} ({what}; empty to skip): "))?;
    Ok(Some(typed).filter(|v| !v.is_empty()))
}

/// A new admin token: 32 bytes from the operating system's generator, hex.
pub fn new_token() -> anyhow::Result<String> {
    use crypto_box::aead::rand_core::RngCore;
    let mut bytes = [0u8; 32];
    crypto_box::aead::OsRng.try_fill_bytes(&mut bytes).map_err(|e| anyhow::anyhow!("no random bytes: {e}"))?;
    Ok(hex::encode(bytes))
}

/// Reads a line from the terminal with echo off, restoring the terminal whatever happens.
fn hidden_prompt(prompt: &str) -> anyhow::Result<String> {
    eprint!("{prompt}");
    std::io::stderr().flush()?;
    let echo = EchoOff::new();
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    // ECHONL stays on: the newline shows, so the next line starts where it should.
    drop(echo);
    read?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// The terminal's echo turned off for as long as this lives.
struct EchoOff {
    saved: Option<libc::termios>,
}

impl EchoOff {
    fn new() -> EchoOff {
        // SAFETY: termios is plain data; tcgetattr fills it or fails, and stdin is fd 0.
        let mut settings: libc::termios = unsafe { std::mem::zeroed() };
        if unsafe { libc::tcgetattr(libc::STDIN_FILENO, &mut settings) } != 0 {
            return EchoOff { saved: None };
        }
        let saved = settings;
        settings.c_lflag &= !libc::ECHO;
        settings.c_lflag |= libc::ECHONL;
        // SAFETY: a termios read from this terminal, changed in one flag.
        unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &settings) };
        EchoOff { saved: Some(saved) }
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            // SAFETY: the settings this terminal had before.
            unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, saved) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_64_hex_digits_and_never_repeat() {
        let (a, b) = (new_token().unwrap(), new_token().unwrap());
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
