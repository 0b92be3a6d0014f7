from scapp.cli import main

raise SystemExit(main())
