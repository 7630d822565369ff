from onionpost.cli import main

main()
