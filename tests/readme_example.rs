//! README.md's example and examples/readme.rs must stay the same code.

#[test]
fn readme_example_is_the_compiled_example() {
    let readme = include_str!("../README.md");
    let example = include_str!("../examples/readme.rs");
    let code = readme.split("```rust\n").nth(1).and_then(|rest| rest.split("```").next()).expect("a rust block");
    assert!(example.ends_with(code), "README.md's example differs from examples/readme.rs");
}
