from ncap.cli import main

raise SystemExit(main())
