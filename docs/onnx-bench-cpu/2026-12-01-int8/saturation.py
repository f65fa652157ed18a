# Exact integer product of DynamicQuantizeLinear + MatMulInteger vs ONNX Runtime's, with 8-bit (127) and 7-bit (63) weights.
# PYTHONPATH=.deps:.deps/oracles python3 docs/onnx-bench-cpu/2026-12-01-int8/saturation.py
import numpy as np, onnxruntime as ort
import sys; sys.path.insert(0,'/tmp/q')
from onnx import helper as h, TensorProto as T, numpy_helper as nh
rng=np.random.default_rng(0)
K,N,M=256,768,4
for wmax in [127,63]:
    W=rng.standard_normal((N,K)).astype(np.float32)*0.05
    sc=np.abs(W).max(1)/wmax; Wq=np.round(W/sc[:,None]).clip(-wmax,wmax).astype(np.int8).T.copy()
    x=rng.standard_normal((M,K)).astype(np.float32)
    g=h.make_graph([h.make_node('DynamicQuantizeLinear',['x'],['xq','xs','xz']),h.make_node('MatMulInteger',['xq','w','xz','wz'],['y'])],'g',
      [h.make_tensor_value_info('x',T.FLOAT,['m',K])],[h.make_tensor_value_info('y',T.INT32,['m',N]),h.make_tensor_value_info('xq',T.UINT8,['m',K]),h.make_tensor_value_info('xz',T.UINT8,[])],
      [nh.from_array(Wq,'w'),nh.from_array(np.array(0,np.int8),'wz')])
    m=h.make_model(g,opset_imports=[h.make_opsetid('',17)]); m.ir_version=8
    so=ort.SessionOptions(); so.intra_op_num_threads=1
    s=ort.InferenceSession(m.SerializeToString(),so,providers=['CPUExecutionProvider'])
    y,xq,xz=s.run(None,{'x':x})
    exact=(xq.astype(np.int64)-int(xz))@Wq.astype(np.int64)
    print(wmax,'max |ort-exact| int32:',np.abs(y-exact).max(),'of max',np.abs(exact).max(), 'outputs differing', (y!=exact).sum())
