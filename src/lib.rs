//! streamvault library (skeleton)
