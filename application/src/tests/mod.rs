//! Unit tests of the use cases against mockall mocks of every port.
