//! ambientd: sources → index → xDS.
