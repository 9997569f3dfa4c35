mod app;
mod cli;
mod cmd;

fn main() -> std::process::ExitCode {
    app::main()
}
