//! Turning clean CSV rows into typed JSON records (issue 4, in progress): so far the typed
//! value parsers and the JSON string writer the mapping will use.

pub mod value;
