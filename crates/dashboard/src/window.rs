//! The time window a page looks at: `1h`, `6h`, `24h` (default), `7d` or `30d`.

use std::time::{Duration, SystemTime};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub name: &'static str,
    pub length: Duration,
}

/// The windows offered, in order.
pub const WINDOWS: [Window; 5] = [
    Window::new("1h", 3600),
    Window::new("6h", 6 * 3600),
    Window::new("24h", 24 * 3600),
    Window::new("7d", 7 * 86_400),
    Window::new("30d", 30 * 86_400),
];

impl Window {
    const fn new(name: &'static str, seconds: u64) -> Self {
        Window {
            name,
            length: Duration::from_secs(seconds),
        }
    }

    /// The window named `name`; 24h when there is none, or none by that name.
    pub fn parse(name: Option<&str>) -> Self {
        WINDOWS
            .into_iter()
            .find(|w| Some(w.name) == name)
            .unwrap_or(WINDOWS[2])
    }

    /// When the window starts, looking back from now.
    pub fn since(&self) -> SystemTime {
        SystemTime::now()
            .checked_sub(self.length)
            .unwrap_or(SystemTime::UNIX_EPOCH)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_read_by_name_and_default_to_a_day() {
        assert_eq!(Window::parse(Some("7d")).length.as_secs(), 7 * 86_400);
        assert_eq!(Window::parse(None).name, "24h");
        assert_eq!(Window::parse(Some("1y")).name, "24h");
    }
}
