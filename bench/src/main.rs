//! `llmr-bench`: `make bench` (see bench/README.md).
//!
//! - `llmr-bench run [ROW…]`: starts the stand-in, runs every row (or the named ones) in a
//!   child process each, prints the table and writes bench/results.md;
//! - `llmr-bench standin`: the stand-in (prints its port);
//! - `llmr-bench row NAME BASE`: one row against the stand-in at BASE.

mod bare;
mod c_abi;
mod measure;
mod modes;
mod report;
mod row;
mod standin;
mod suite;

#[global_allocator]
static ALLOC: measure::Counting = measure::Counting;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("standin") => standin::serve(),
        Some("row") if args.len() == 3 => {
            let mode = modes::find(&args[1]).unwrap_or_else(|| panic!("no row {}", args[1]));
            row::run(mode, &args[2]);
        }
        Some("run") => suite::run(&args[1..]),
        _ => {
            eprintln!("usage: llmr-bench run [ROW…] | standin | row NAME BASE");
            std::process::exit(64);
        }
    }
}
