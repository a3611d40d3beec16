from otszmq.cli import main

raise SystemExit(main())
