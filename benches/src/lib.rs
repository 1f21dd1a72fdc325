//! The benchmark harness (load generator, scenarios, latency analysis) lives here; see issue "Latency
//! benchmark harness". Empty until then.
