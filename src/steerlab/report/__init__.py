"""Tables, plots and reports, drawn from results files only."""
