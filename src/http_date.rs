//! HTTP-date parsing and formatting (RFC 9110 §5.6.7).
