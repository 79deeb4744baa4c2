//! Examples of hollow: see the README in this folder.
