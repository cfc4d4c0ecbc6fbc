import FlowmapCLI

Flowmap.main()
