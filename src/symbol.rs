//! Symbol names and their interning to dense ids.
//!
//! Ticks carry a `u32` symbol id; names travel once, in the symbol map a client gets
//! on subscribe. Feeds name symbols with [`Symbol`], an inline string that a channel
//! message can carry without an allocation.

use std::collections::HashMap;
use std::fmt;
use std::sync::RwLock;

use thiserror::Error;

/// Longest symbol name, in bytes.
pub const MAX_SYMBOL_LEN: usize = 31;

/// Why a name is not a valid symbol, or could not be interned.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SymbolError {
    /// Empty name.
    #[error("symbol name is empty")]
    Empty,
    /// Longer than [`MAX_SYMBOL_LEN`] bytes.
    #[error("symbol name longer than {MAX_SYMBOL_LEN} bytes")]
    TooLong,
    /// A byte outside `A-Z a-z 0-9 . _ - : /`.
    #[error("symbol name may only hold letters, digits and . _ - : /")]
    InvalidChar,
    /// The table already holds its configured maximum of symbols.
    #[error("symbol table is full ({0} symbols)")]
    Full(usize),
}

/// A symbol name of at most [`MAX_SYMBOL_LEN`] bytes, stored inline.
///
/// Names are limited to `A-Z a-z 0-9 . _ - : /`, which covers venue-namespaced symbols
/// such as `BINANCE:BTCUSDT` or `BTC-USD`, and needs no escaping in JSON.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Symbol {
    len: u8,
    bytes: [u8; MAX_SYMBOL_LEN],
}

impl Symbol {
    /// Validates and stores `name`.
    pub fn new(name: &str) -> Result<Symbol, SymbolError> {
        Symbol::from_bytes(name.as_bytes())
    }

    /// Validates and stores raw name bytes.
    pub fn from_bytes(name: &[u8]) -> Result<Symbol, SymbolError> {
        if name.is_empty() {
            return Err(SymbolError::Empty);
        }
        if name.len() > MAX_SYMBOL_LEN {
            return Err(SymbolError::TooLong);
        }
        if !name
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-' | b':' | b'/'))
        {
            return Err(SymbolError::InvalidChar);
        }
        let mut bytes = [0u8; MAX_SYMBOL_LEN];
        bytes[..name.len()].copy_from_slice(name);
        Ok(Symbol {
            len: name.len() as u8,
            bytes,
        })
    }

    /// `prefix:name`, for symbols namespaced by venue.
    pub fn namespaced(prefix: &str, name: &[u8]) -> Result<Symbol, SymbolError> {
        if prefix.is_empty() {
            return Symbol::from_bytes(name);
        }
        let mut buf = [0u8; MAX_SYMBOL_LEN * 2 + 1];
        let total = prefix.len() + 1 + name.len();
        if total > MAX_SYMBOL_LEN {
            return Err(SymbolError::TooLong);
        }
        buf[..prefix.len()].copy_from_slice(prefix.as_bytes());
        buf[prefix.len()] = b':';
        buf[prefix.len() + 1..total].copy_from_slice(name);
        Symbol::from_bytes(&buf[..total])
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        // Only ASCII is ever stored (checked in `from_bytes`).
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("")
    }
}

impl fmt::Debug for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Symbol({})", self.as_str())
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Interns symbol names to dense ids `0..len`, shared by every thread.
///
/// Interning takes a write lock and happens once per new symbol; lookups take a read
/// lock and happen on cold paths (subscribe, the `/symbols` endpoint). The hot path
/// never touches it: the sequencer keeps its own map, and writer cores keep their own
/// copy of the names ([`SymbolTable::names_since`]).
#[derive(Debug)]
pub struct SymbolTable {
    max: usize,
    inner: RwLock<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    by_name: HashMap<Symbol, u32>,
    names: Vec<Symbol>,
}

impl SymbolTable {
    /// An empty table that holds at most `max` symbols.
    pub fn new(max: usize) -> SymbolTable {
        SymbolTable {
            max,
            inner: RwLock::new(Inner::default()),
        }
    }

    /// The id of `symbol`, adding it if new.
    pub fn intern(&self, symbol: Symbol) -> Result<u32, SymbolError> {
        if let Some(id) = self.id(&symbol) {
            return Ok(id);
        }
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if let Some(&id) = inner.by_name.get(&symbol) {
            return Ok(id);
        }
        if inner.names.len() >= self.max {
            return Err(SymbolError::Full(self.max));
        }
        let id = inner.names.len() as u32;
        inner.names.push(symbol);
        inner.by_name.insert(symbol, id);
        Ok(id)
    }

    /// The id of a known symbol.
    pub fn id(&self, symbol: &Symbol) -> Option<u32> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner.by_name.get(symbol).copied()
    }

    /// The id of a known symbol by name.
    pub fn id_of(&self, name: &str) -> Option<u32> {
        Symbol::new(name).ok().and_then(|s| self.id(&s))
    }

    /// The name of an id.
    pub fn name(&self, id: u32) -> Option<Symbol> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner.names.get(id as usize).copied()
    }

    /// Number of interned symbols.
    pub fn len(&self) -> usize {
        self.inner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .names
            .len()
    }

    /// Whether no symbol is interned yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Most symbols the table accepts.
    pub fn capacity(&self) -> usize {
        self.max
    }

    /// Appends the names with ids `from..` to `out`; writer cores use it to extend
    /// their own copy when they meet a new id.
    pub fn names_since(&self, from: usize, out: &mut Vec<Symbol>) {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        if from < inner.names.len() {
            out.extend_from_slice(&inner.names[from..]);
        }
    }

    /// All names in id order.
    pub fn all(&self) -> Vec<Symbol> {
        let mut out = Vec::new();
        self.names_since(0, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_names() {
        assert!(Symbol::new("BINANCE:BTCUSDT").is_ok());
        assert!(Symbol::new("BTC-USD").is_ok());
        assert_eq!(Symbol::new(""), Err(SymbolError::Empty));
        assert_eq!(Symbol::new(&"X".repeat(32)), Err(SymbolError::TooLong));
        assert_eq!(Symbol::new("a\"b"), Err(SymbolError::InvalidChar));
        assert_eq!(Symbol::new("é"), Err(SymbolError::InvalidChar));
        assert_eq!(
            Symbol::namespaced("BINANCE", b"BTCUSDT").unwrap().as_str(),
            "BINANCE:BTCUSDT"
        );
    }

    #[test]
    fn interns_densely_and_bounds() {
        let t = SymbolTable::new(2);
        let a = Symbol::new("A").unwrap();
        let b = Symbol::new("B").unwrap();
        assert_eq!(t.intern(a), Ok(0));
        assert_eq!(t.intern(b), Ok(1));
        assert_eq!(t.intern(a), Ok(0));
        assert_eq!(
            t.intern(Symbol::new("C").unwrap()),
            Err(SymbolError::Full(2))
        );
        assert_eq!(t.id_of("B"), Some(1));
        assert_eq!(t.name(1), Some(b));
        let mut names = vec![a];
        t.names_since(1, &mut names);
        assert_eq!(names, vec![a, b]);
    }
}
