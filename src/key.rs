//! Cache keys: method, scheme, host, normalised path and query.
