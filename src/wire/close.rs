//! `CloseCode`: every WebSocket close code tickcast sends or understands, in one place.
//!
//! RFC 6455 §7.4 defines the 1000 range, IANA's registry adds 1012–1014, and 4000–4999
//! are for private use: tickcast uses 4008 and 4010 there. `docs/protocol.md` lists
//! which code means what to a client.

use std::fmt;

/// A close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseCode {
    /// 1000: the purpose of the connection is fulfilled (a client's ordinary close).
    Normal,
    /// 1001: the server is shutting down; reconnect elsewhere.
    GoingAway,
    /// 1002: the peer broke the WebSocket protocol (unmasked frame, bad opcode, …).
    Protocol,
    /// 1003: a kind of data this endpoint does not accept.
    Unsupported,
    /// 1007: a text message or close reason that is not UTF-8.
    InvalidPayload,
    /// 1008: a policy violation.
    Policy,
    /// 1009: a message over the size limit.
    TooBig,
    /// 1011: the server met an unexpected condition.
    Internal,
    /// 1013: try again later (the server is overloaded).
    TryAgainLater,
    /// 4008: a subscriber that stopped reading was evicted as a slow consumer.
    SlowConsumer,
    /// 4010: nothing, not even a pong, arrived for `idle_timeout_ms`.
    HeartbeatTimeout,
    /// Any other code a peer may legally send (see [`CloseCode::is_valid_to_receive`]).
    Other(u16),
}

impl CloseCode {
    /// The number on the wire.
    pub const fn as_u16(self) -> u16 {
        match self {
            CloseCode::Normal => 1000,
            CloseCode::GoingAway => 1001,
            CloseCode::Protocol => 1002,
            CloseCode::Unsupported => 1003,
            CloseCode::InvalidPayload => 1007,
            CloseCode::Policy => 1008,
            CloseCode::TooBig => 1009,
            CloseCode::Internal => 1011,
            CloseCode::TryAgainLater => 1013,
            CloseCode::SlowConsumer => 4008,
            CloseCode::HeartbeatTimeout => 4010,
            CloseCode::Other(c) => c,
        }
    }

    /// The code for a number.
    pub const fn from_u16(code: u16) -> CloseCode {
        match code {
            1000 => CloseCode::Normal,
            1001 => CloseCode::GoingAway,
            1002 => CloseCode::Protocol,
            1003 => CloseCode::Unsupported,
            1007 => CloseCode::InvalidPayload,
            1008 => CloseCode::Policy,
            1009 => CloseCode::TooBig,
            1011 => CloseCode::Internal,
            1013 => CloseCode::TryAgainLater,
            4008 => CloseCode::SlowConsumer,
            4010 => CloseCode::HeartbeatTimeout,
            c => CloseCode::Other(c),
        }
    }

    /// Whether a peer may send `code` in a close frame: 1000–1003, 1007–1014 (RFC 6455
    /// and the IANA registry) and 3000–4999 (registered and private use). 1004–1006 and
    /// 1015 are reserved and must never be sent; anything else is unassigned.
    pub const fn is_valid_to_receive(code: u16) -> bool {
        matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }

    /// The close frame payload: the code, then as much of `reason` as fits in a control
    /// frame (125 bytes in all), cut at a UTF-8 character boundary.
    pub fn payload(self, reason: &str) -> ClosePayload {
        let mut bytes = [0u8; MAX_CLOSE_PAYLOAD];
        bytes[..2].copy_from_slice(&self.as_u16().to_be_bytes());
        let mut n = reason.len().min(MAX_CLOSE_PAYLOAD - 2);
        while !reason.is_char_boundary(n) {
            n -= 1;
        }
        bytes[2..2 + n].copy_from_slice(&reason.as_bytes()[..n]);
        ClosePayload {
            bytes,
            len: 2 + n as u8,
        }
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.as_u16())
    }
}

/// Largest close frame payload: a control frame carries at most 125 bytes.
pub const MAX_CLOSE_PAYLOAD: usize = 125;

/// A close frame's payload, at most [`MAX_CLOSE_PAYLOAD`] bytes.
#[derive(Debug, Clone, Copy)]
pub struct ClosePayload {
    bytes: [u8; MAX_CLOSE_PAYLOAD],
    len: u8,
}

impl ClosePayload {
    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip() {
        for code in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1011, 1013, 4008, 4010, 3001,
        ] {
            assert_eq!(CloseCode::from_u16(code).as_u16(), code);
        }
        assert_eq!(CloseCode::from_u16(4008), CloseCode::SlowConsumer);
    }

    #[test]
    fn valid_codes_follow_the_registry() {
        for ok in [
            1000, 1001, 1002, 1003, 1007, 1010, 1011, 1012, 1013, 1014, 3000, 4999,
        ] {
            assert!(CloseCode::is_valid_to_receive(ok), "{ok}");
        }
        for bad in [
            0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            assert!(!CloseCode::is_valid_to_receive(bad), "{bad}");
        }
    }

    #[test]
    fn a_long_reason_is_cut_at_a_character_boundary() {
        let reason = "é".repeat(100); // 200 bytes
        let p = CloseCode::Normal.payload(&reason);
        assert!(p.as_bytes().len() <= MAX_CLOSE_PAYLOAD);
        assert_eq!(&p.as_bytes()[..2], &1000u16.to_be_bytes());
        let text = std::str::from_utf8(&p.as_bytes()[2..]).expect("still UTF-8");
        assert_eq!(text.len(), 122, "61 two-byte characters fit in 123 bytes");
        let short = CloseCode::TooBig.payload("too big");
        assert_eq!(&short.as_bytes()[2..], b"too big");
    }
}
