from julia_cli.main import main

main()
