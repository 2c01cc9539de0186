//! Labelled data in, public datasets fetched.
