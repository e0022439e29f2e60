"""32-bit x86 (i386): CONTEXT and KTRAP_FRAME layouts, PAE and non-PAE paging, the stack walker.

* :mod:`.paging`: :class:`X86Translator` (2-level with 4 MiB pages, PAE 3-level with 2 MiB pages);
* :mod:`.context`: CONTEXT_i386 and the x86 KTRAP_FRAME, decoded to :class:`dumpkit.model.Context`;
* :mod:`.fpo`: FPO_DATA and FrameData records from a PDB, and their program strings;
* :mod:`.walker`: the walk (context, FPO/frame data, EBP chain, trap frames, validated scan).
"""
