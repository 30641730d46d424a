"""Package data (assets): not code; shipped with the package (setup.cfg [options.package_data])."""
