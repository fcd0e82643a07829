//! Reading a caught panic, for the places that survive one (a model-loading thread, the
//! classification thread) and must say what happened.

use std::any::Any;

/// The message a panic was raised with (`panic!` with a literal or with formatting), or
/// "no message" for any other payload.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_literal_formatted_and_other_payloads() {
        let caught = |f: fn()| std::panic::catch_unwind(f).unwrap_err();
        let literal = caught(|| panic!("out of memory"));
        let formatted = caught(|| panic!("{} bytes", 4));
        let other = caught(|| std::panic::panic_any(7u8));
        assert_eq!(panic_message(literal.as_ref()), "out of memory");
        assert_eq!(panic_message(formatted.as_ref()), "4 bytes");
        assert_eq!(panic_message(other.as_ref()), "no message");
    }
}
