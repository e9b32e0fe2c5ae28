"""`hetsync bench SUITE`: measured comparisons, imported only by the bench subcommand. One
module per suite (`paper`, `peers`, `overhead`, `heterogeneous`), each with a `run(bench)`;
`harness` records rows and writes reports and charts; `baselines` holds the peers."""
