# One int8 product per graph, 1 thread, µs per call and max error relative to the fp32 product:
# fp32 MatMul, per-tensor DynamicQuantizeLinear (what int8 bundles use), and per-row quantization
# written out in ONNX nodes. PYTHONPATH=.deps:.deps/oracles python3 docs/onnx-bench-cpu/2026-12-01-int8/matmul-kernels.py
import numpy as np, onnxruntime as ort, time
from onnx import helper as h, TensorProto as T, numpy_helper as nh
rng=np.random.default_rng(0)
def model(kind,K,N,M):
    W=rng.standard_normal((N,K)).astype(np.float32)*0.05
    sc=np.abs(W).max(1)/63; Wq=np.round(W/sc[:,None]).clip(-63,63).astype(np.int8).T.copy()
    inits=[nh.from_array(Wq,'w'),nh.from_array(sc.astype(np.float32),'ws'),nh.from_array(np.array(0,np.int8),'wz')]
    nodes=[]
    if kind=='tensor':
        nodes+=[h.make_node('DynamicQuantizeLinear',['x'],['xq','xs','xz']),
                h.make_node('MatMulInteger',['xq','w','xz','wz'],['y32']),
                h.make_node('Cast',['y32'],['yf'],to=1),
                h.make_node('Mul',['xs','ws'],['s']),
                h.make_node('Mul',['yf','s'],['y'])]
    elif kind=='row':
        inits+=[nh.from_array(np.array(127,np.float32),'c127'),nh.from_array(np.array(1e-12,np.float32),'eps'),
                nh.from_array(np.array(128,np.float32),'c128'),nh.from_array(np.array(128,np.uint8),'az')]
        nodes+=[h.make_node('Abs',['x'],['ab']),h.make_node('ReduceMax',['ab'],['mx'],keepdims=1,axes=[-1]),
                h.make_node('Max',['mx','eps'],['mx2']),h.make_node('Div',['mx2','c127'],['rs']),
                h.make_node('Div',['x','rs'],['xd']),h.make_node('Round',['xd'],['xr']),h.make_node('Add',['xr','c128'],['xa']),
                h.make_node('Cast',['xa'],['xq'],to=T.UINT8),
                h.make_node('MatMulInteger',['xq','w','az','wz'],['y32']),
                h.make_node('Cast',['y32'],['yf'],to=1),
                h.make_node('Mul',['rs','ws'],['s']),
                h.make_node('Mul',['yf','s'],['y'])]
    elif kind.startswith('nbits'):
        bs=int(kind[5:])
        # MatMulNBits 8-bit: B [N, K/bs, bs] uint8 with zero point 128 default? use symmetric via zero_points
        nb=K//bs
        Wb=W.reshape(N,nb,bs); s=np.abs(Wb).max(2)/127
        q=(np.round(Wb/s[:,:,None]).clip(-127,127)+128).astype(np.uint8)
        inits=[nh.from_array(q,'w'),nh.from_array(s.astype(np.float32).reshape(-1),'ws'),
               nh.from_array(np.full((N*nb,),128,np.uint8),'zp')]
        nodes+=[h.make_node('MatMulNBits',['x','w','ws','zp'],['y'],domain='com.microsoft',K=K,N=N,bits=8,block_size=bs,accuracy_level=4)]
    elif kind=='fp32':
        inits=[nh.from_array(W.T.copy(),'w')]
        nodes+=[h.make_node('MatMul',['x','w'],['y'])]
    g=h.make_graph(nodes,'g',[h.make_tensor_value_info('x',T.FLOAT,['m',K])],[h.make_tensor_value_info('y',T.FLOAT,['m',N])],inits)
    m=h.make_model(g,opset_imports=[h.make_opsetid('',17),h.make_opsetid('com.microsoft',1)]); m.ir_version=8
    return m.SerializeToString(), W
so=ort.SessionOptions(); so.intra_op_num_threads=1; so.inter_op_num_threads=1
for K,N in [(256,768),(256,1024),(1024,256),(256,8000)]:
    for M in [1,32]:
        x=rng.standard_normal((M,K)).astype(np.float32)
        row=[]
        for kind in ['fp32','tensor','row','nbits32']:
            if kind.startswith('nbits') and int(kind[5:])>K: continue
            try:
                b,W=model(kind,K,N,M); s=ort.InferenceSession(b,so,providers=['CPUExecutionProvider'])
            except Exception as e:
                row.append(f"{kind}:ERR {str(e)[:80]}"); continue
            y=s.run(None,{'x':x})[0]; ref=x@W.T
            err=np.abs(y-ref).max()/np.abs(ref).max()
            n=2000 if M==1 else 500
            t=time.perf_counter()
            for _ in range(n): s.run(None,{'x':x})
            dt=(time.perf_counter()-t)/n*1e6
            row.append(f"{kind}:{dt:.1f}us e{err:.1e}")
        print(K,N,M,' | '.join(row),flush=True)
